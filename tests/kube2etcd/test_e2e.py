"""End to end: fake Kubernetes API -> kube2etcd process -> real etcd -> skyserve -> DNS queries."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from kube2etcd.records import fnv32a
from kubefake import FakeKubeAPI, endpoint_slice, endpoints, pod, service
from tests.support.bridge_env import HTTP, NX, SVC, Env, make_env
from tests.support.bridge_proc import BridgeProcess
from tests.support.etcd_server import EtcdServer
from tests.support.polling import wait_for

pytestmark = pytest.mark.e2e


def slice_(name: str, svc: str, eps: Sequence[Any], ns: str = "default",
           ports: Sequence[Any] = HTTP, family: str = "IPv4") -> dict[str, Any]:
    return endpoint_slice(ns, name, svc, family, endpoints=eps, ports=ports)


def test_cluster_ip_service_create_update_delete(env: Env) -> None:
    api = env.api
    api.upsert("services", service("default", "web", ["10.96.0.10"], ports=[
        {"name": "http", "port": 80}, {"name": "dns", "port": 53, "protocol": "UDP"},
        {"port": 9090}]))
    bridge = env.bridge()
    env.expect("web.default." + SVC, "A", {"10.96.0.10"})
    env.expect("_http._tcp.web.default." + SVC, "SRV", {"80 web.default.svc.cluster.local."})
    env.expect("_dns._udp.web.default." + SVC, "SRV", {"53 web.default.svc.cluster.local."})
    env.expect("10.0.96.10.in-addr.arpa.", "PTR", {"web.default.svc.cluster.local."})
    env.expect("dns-version.cluster.local.", "TXT", {'"1.1.0"'})
    # Update: new IP, port renumbered.
    api.upsert("services", service("default", "web", ["10.96.0.11"],
                                   ports=[{"name": "http", "port": 8080}]))
    env.expect("web.default." + SVC, "A", {"10.96.0.11"})
    env.expect("_http._tcp.web.default." + SVC, "SRV", {"8080 web.default.svc.cluster.local."})
    env.expect("_dns._udp.web.default." + SVC, "SRV", NX)
    env.expect("11.0.96.10.in-addr.arpa.", "PTR", {"web.default.svc.cluster.local."})
    env.expect("10.0.96.10.in-addr.arpa.", "PTR", NX)
    # Delete.
    api.delete("services", "default", "web")
    env.expect("web.default." + SVC, "A", NX)
    env.expect("_http._tcp.web.default." + SVC, "SRV", NX)
    env.expect("11.0.96.10.in-addr.arpa.", "PTR", NX)
    assert bridge.metric("kube2etcd_records{kind=\"txt\"}") == 1
    for name in ("kube2etcd_dns_programming_duration_seconds_count",
                 "kube2etcd_etcd_operations_total{op=\"put\",result=\"ok\"}",
                 "kube2etcd_reconcile_duration_seconds_count{mode=\"full\"}",
                 "kube2etcd_reconcile_changes_total{op=\"delete\"}",
                 "kube2etcd_last_sync_timestamp_seconds"):
        assert (bridge.metric(name) or 0) > 0, name
    assert bridge.status("/healthz")[0] == 200
    assert bridge.stop() == 0  # SIGTERM is a clean exit


def test_dual_stack_and_shared_ptr(env: Env) -> None:
    env.api.upsert("services", service("default", "ds", ["10.96.1.1", "fd00::1:1"], ports=HTTP))
    env.api.upsert("services", service("other", "twin", ["10.96.1.1"]))
    env.bridge()
    env.expect("ds.default." + SVC, "A", {"10.96.1.1"})
    env.expect("ds.default." + SVC, "AAAA", {"fd00::1:1"})
    ptr6 = "1.0.0.0.1.0.0.0" + ".0" * 20 + ".0.0.d.f.ip6.arpa."
    env.expect(ptr6, "PTR", {"ds.default.svc.cluster.local."})
    env.expect("1.1.96.10.in-addr.arpa.", "PTR",
               {"ds.default.svc.cluster.local.", "twin.other.svc.cluster.local."})
    env.api.upsert("services", service("default", "ds", ["10.96.1.1", "fd00::1:2"], ports=HTTP))
    env.expect("ds.default." + SVC, "AAAA", {"fd00::1:2"})
    env.expect(ptr6, "PTR", NX)
    env.api.delete("services", "default", "ds")
    env.expect("ds.default." + SVC, "AAAA", NX)
    env.expect("1.1.96.10.in-addr.arpa.", "PTR", {"twin.other.svc.cluster.local."})


def test_headless_endpoints_ready_unready_and_hostnames(env: Env) -> None:
    api = env.api
    name = "db.default." + SVC
    api.upsert("services", service("default", "db", headless=True, ports=HTTP))
    env.bridge()
    env.expect(name, "A", NX)  # no endpoints yet: no records at all
    api.upsert("endpointslices", slice_("db-a", "db", [
        "10.0.0.2",
        {"addresses": ["10.0.0.3"], "hostname": "db-0"},
        {"addresses": ["10.0.0.4"], "hostname": "db-1"},
        {"addresses": ["10.0.0.5"], "hostname": "db-1"},
        {"addresses": ["10.0.0.6"], "conditions": {"ready": False}},
    ]))
    env.expect(name, "A", {"10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"})
    env.expect("10-0-0-2." + name, "A", {"10.0.0.2"})
    env.expect("db-0." + name, "A", {"10.0.0.3"})
    env.expect("db-1." + name, "A", {"10.0.0.4", "10.0.0.5"})
    env.expect("10-0-0-6." + name, "A", NX)
    env.expect("_http._tcp." + name, "SRV", {f"80 10-0-0-2.{name}", f"80 db-0.{name}",
                                             f"80 db-1.{name}"})
    env.expect("3.0.0.10.in-addr.arpa.", "PTR", {f"db-0.{name}"})
    env.expect("2.0.0.10.in-addr.arpa.", "PTR", {f"10-0-0-2.{name}"})
    # 10.0.0.6 becomes ready, 10.0.0.2 unready.
    api.upsert("endpointslices", slice_("db-a", "db", [
        {"addresses": ["10.0.0.2"], "conditions": {"ready": False}},
        {"addresses": ["10.0.0.3"], "hostname": "db-0"},
        "10.0.0.6",
    ]))
    env.expect(name, "A", {"10.0.0.3", "10.0.0.6"})
    env.expect("10-0-0-2." + name, "A", NX)
    env.expect("2.0.0.10.in-addr.arpa.", "PTR", NX)
    env.expect("db-1." + name, "A", NX)
    # None ready: the name disappears.
    api.upsert("endpointslices", slice_("db-a", "db", [
        {"addresses": ["10.0.0.3"], "conditions": {"ready": False}}]))
    env.expect(name, "A", NX)
    env.expect("_http._tcp." + name, "SRV", NX)
    # publishNotReadyAddresses publishes it anyway.
    api.upsert("services", service("default", "db", headless=True, ports=HTTP,
                                   publish_not_ready=True))
    env.expect(name, "A", {"10.0.0.3"})
    # A slice deleted.
    api.delete("endpointslices", "default", "db-a")
    env.expect(name, "A", NX)


def test_endpoint_ptrs_of_cluster_ip_services(env: Env) -> None:
    """`dig -x <endpoint ip>` names the endpoint under every ClusterIP service it backs."""
    api = env.api
    web, other = "web.default." + SVC, "api.default." + SVC
    api.upsert("services", service("default", "web", ["10.96.10.1"], ports=HTTP))
    api.upsert("services", service("default", "api", ["10.96.10.2"], ports=HTTP))
    api.upsert("endpointslices", slice_("web-1", "web", [
        "10.0.10.1", {"addresses": ["10.0.10.2"], "hostname": "web-0"},
        {"addresses": ["10.0.10.3"], "conditions": {"ready": False}}, "10.0.10.9"]))
    api.upsert("endpointslices", slice_("api-1", "api", ["10.0.10.1"]))
    # Another writer already holds the PTR key the bridge would write for 10.0.10.9.
    held = f"{env.prefix}/arpa/in-addr/10/0/10/9/{fnv32a('default/web')}"
    env.etcd.put(held, '{"host":"manual.example."}')
    bridge = env.bridge()
    env.expect("1.10.0.10.in-addr.arpa.", "PTR", {"10-0-10-1." + web, "10-0-10-1." + other})
    env.expect("2.10.0.10.in-addr.arpa.", "PTR", {"web-0." + web})
    env.expect("3.10.0.10.in-addr.arpa.", "PTR", NX)  # not ready
    env.expect("1.10.96.10.in-addr.arpa.", "PTR", {web})  # the cluster IP's own PTR
    env.expect(web, "A", {"10.96.10.1"})
    # Endpoint names of a ClusterIP service resolve, as CoreDNS answers them (issue 10;
    # they had a PTR only), while the service name keeps its cluster IP alone (above).
    env.expect("10-0-10-1." + web, "A", {"10.0.10.1"})
    env.expect("web-0." + web, "A", {"10.0.10.2"})
    env.expect("_http._tcp." + web, "SRV", {"80 " + web})
    env.expect("9.10.0.10.in-addr.arpa.", "PTR", {"manual.example."})
    assert bridge.metric("kube2etcd_foreign_keys_skipped_total") == 1
    assert bridge.metric("kube2etcd_foreign_keys") == 1
    # 10.0.10.3 becomes ready, 10.0.10.1 leaves web.
    api.upsert("endpointslices", slice_("web-1", "web", [
        {"addresses": ["10.0.10.2"], "hostname": "web-0"}, "10.0.10.3"]))
    env.expect("3.10.0.10.in-addr.arpa.", "PTR", {"10-0-10-3." + web})
    env.expect("1.10.0.10.in-addr.arpa.", "PTR", {"10-0-10-1." + other})
    # publishNotReadyAddresses publishes unready endpoints' PTRs too.
    api.upsert("endpointslices", slice_("web-1", "web", [
        {"addresses": ["10.0.10.2"], "hostname": "web-0", "conditions": {"ready": False}}]))
    env.expect("2.10.0.10.in-addr.arpa.", "PTR", NX)
    api.upsert("services", service("default", "web", ["10.96.10.1"], ports=HTTP,
                                   publish_not_ready=True))
    env.expect("2.10.0.10.in-addr.arpa.", "PTR", {"web-0." + web})
    # Gone with the slice, and with the service.
    api.delete("endpointslices", "default", "api-1")
    env.expect("1.10.0.10.in-addr.arpa.", "PTR", NX)
    api.delete("services", "default", "web")
    env.expect("2.10.0.10.in-addr.arpa.", "PTR", NX)
    env.expect("1.10.96.10.in-addr.arpa.", "PTR", NX)
    assert env.etcd.get(held) == b'{"host":"manual.example."}'


def test_external_name_and_type_changes(env: Env) -> None:
    api = env.api
    name = "x.default." + SVC
    api.upsert("services", service("default", "x", ["10.96.2.1"], ports=HTTP))
    api.upsert("endpointslices", slice_("x-1", "x", ["10.0.2.1"]))
    env.bridge()
    env.expect(name, "A", {"10.96.2.1"})
    env.expect("1.2.96.10.in-addr.arpa.", "PTR", {name})
    api.upsert("services", service("default", "x", headless=True, ports=HTTP))  # -> headless
    env.expect(name, "A", {"10.0.2.1"})
    env.expect("1.2.96.10.in-addr.arpa.", "PTR", NX)
    env.expect("1.2.0.10.in-addr.arpa.", "PTR", {"10-0-2-1." + name})
    api.upsert("services", service("default", "x", type="ExternalName",
                                   external_name="www.example.org"))
    env.expect(name, "CNAME", {"www.example.org."})
    env.expect("_http._tcp." + name, "SRV", NX)
    env.expect("1.2.0.10.in-addr.arpa.", "PTR", NX)
    api.upsert("services", service("default", "x", type="ExternalName",
                                   external_name="other.example.org"))
    env.expect(name, "CNAME", {"other.example.org."})
    api.delete("services", "default", "x")
    env.expect(name, "CNAME", NX)


def test_pods_verified(env: Env) -> None:
    api = env.api
    api.upsert("pods", pod("default", "p1", "10.1.0.5"))
    api.upsert("pods", pod("default", "p2", "10.1.0.6", phase="Pending"))
    env.bridge("--pods=verified")
    env.expect("10-1-0-5.default.pod.cluster.local.", "A", {"10.1.0.5"})
    env.expect("10-1-0-6.default.pod.cluster.local.", "A", NX)
    env.expect("10-1-0-5.other.pod.cluster.local.", "A", NX)  # only the pod's namespace
    api.upsert("pods", pod("default", "p2", "10.1.0.6"))
    env.expect("10-1-0-6.default.pod.cluster.local.", "A", {"10.1.0.6"})
    api.upsert("pods", pod("default", "p1", "10.1.0.5", phase="Succeeded"))
    env.expect("10-1-0-5.default.pod.cluster.local.", "A", NX)
    api.delete("pods", "default", "p2")
    env.expect("10-1-0-6.default.pod.cluster.local.", "A", NX)


def test_pods_disabled_by_default(env: Env) -> None:
    env.api.upsert("pods", pod("default", "p1", "10.1.0.5"))
    env.api.upsert("services", service("default", "s", ["10.96.3.1"]))
    env.bridge()
    env.expect("s.default." + SVC, "A", {"10.96.3.1"})
    assert env.answer("10-1-0-5.default.pod.cluster.local.", "A") is NX
    assert env.api.count("list", "pods") == 0


def test_namespace_and_label_filters(env: Env) -> None:
    api = env.api
    api.upsert("services", service("a", "keep", ["10.96.4.1"], labels={"dns": "yes"}))
    api.upsert("services", service("a", "unlabelled", ["10.96.4.2"]))
    api.upsert("services", service("b", "other-ns", ["10.96.4.3"], labels={"dns": "yes"}))
    env.bridge("--namespaces", "a,c", "--label-selector", "dns=yes")
    env.expect("keep.a." + SVC, "A", {"10.96.4.1"})
    assert env.answer("unlabelled.a." + SVC, "A") is NX
    assert env.answer("other-ns.b." + SVC, "A") is NX
    api.upsert("services", service("c", "late", ["10.96.4.4"], labels={"dns": "yes"}))
    env.expect("late.c." + SVC, "A", {"10.96.4.4"})
    api.upsert("services", service("a", "keep", ["10.96.4.1"], labels={"dns": "no"}))
    env.expect("keep.a." + SVC, "A", NX)  # left the selection


def test_core_endpoints_api(env: Env) -> None:
    api = env.api
    name = "h.default." + SVC
    api.upsert("services", service("default", "h", headless=True, ports=HTTP))
    api.upsert("endpoints", endpoints("default", "h", [{
        "addresses": ["10.0.5.1", {"ip": "10.0.5.2", "hostname": "h-0"}],
        "notReadyAddresses": ["10.0.5.3"], "ports": HTTP}]))
    api.upsert("endpointslices", slice_("h-x", "h", ["10.0.5.9"]))  # ignored in this mode
    env.bridge("--endpoints-api=endpoints")
    env.expect(name, "A", {"10.0.5.1", "10.0.5.2"})
    env.expect("h-0." + name, "A", {"10.0.5.2"})
    api.upsert("endpoints", endpoints("default", "h", [{"addresses": ["10.0.5.3"],
                                                        "ports": HTTP}]))
    env.expect(name, "A", {"10.0.5.3"})


def test_deletes_missed_during_a_gap_are_removed_after_410(env: Env) -> None:
    api = env.api
    for i in range(5):
        api.upsert("services", service("default", f"s{i}", [f"10.96.5.{i}"]))
    bridge = env.bridge()
    env.expect("s4.default." + SVC, "A", {"10.96.5.4"})
    api.set_down()  # the bridge misses the deletes, then its resourceVersion is compacted
    for i in range(3):
        api.delete("services", "default", f"s{i}")
    api.upsert("services", service("default", "s3", ["10.96.5.33"]))
    api.compact()
    env.stable("s0.default." + SVC, "A", {"10.96.5.0"}, 0.5)  # last good state kept meanwhile
    api.set_down(False)
    for i in range(3):
        env.expect(f"s{i}.default." + SVC, "A", NX, timeout=15)
    env.expect("s3.default." + SVC, "A", {"10.96.5.33"})
    env.expect("s4.default." + SVC, "A", {"10.96.5.4"})
    assert (bridge.metric('kube2etcd_watch_restarts_total{resource="services"}') or 0) >= 1
    assert bridge.running


def test_api_server_down_then_back(env: Env) -> None:
    api = env.api
    api.upsert("services", service("default", "s", ["10.96.6.1"]))
    bridge = env.bridge()
    env.expect("s.default." + SVC, "A", {"10.96.6.1"})
    api.set_down(refuse=False)  # 503s
    api.upsert("services", service("default", "t", ["10.96.6.2"]))
    env.stable("s.default." + SVC, "A", {"10.96.6.1"}, 1.5)
    assert bridge.running and bridge.status("/healthz")[0] == 200
    api.set_down(False)
    env.expect("t.default." + SVC, "A", {"10.96.6.2"}, timeout=15)
    api.set_down()  # refused connections
    time.sleep(1)
    api.set_down(False)
    api.upsert("services", service("default", "u", ["10.96.6.3"]))
    env.expect("u.default." + SVC, "A", {"10.96.6.3"}, timeout=15)


def test_orphans_removed_after_bridge_restart_and_foreign_records_kept(env: Env) -> None:
    api, etcd, prefix = env.api, env.etcd, env.prefix
    foreign = {
        f"{prefix}/local/cluster/svc/default/manual/x": '{"host":"192.0.2.1"}',
        f"{prefix}/local/cluster/www": '{"host":"192.0.2.2"}',
        f"{prefix}/arpa/in-addr/192/0/2/1/m": '{"host":"manual.example."}',
    }
    for k, v in foreign.items():
        etcd.put(k, v)
    api.upsert("services", service("default", "a", ["10.96.7.1"], ports=HTTP))
    api.upsert("services", service("default", "b", ["10.96.7.2"], ports=HTTP))
    first = env.bridge("--resync-period", "1s")
    env.expect("b.default." + SVC, "A", {"10.96.7.2"})
    env.expect("manual.default." + SVC, "A", {"192.0.2.1"})
    env.expect("www.cluster.local.", "A", {"192.0.2.2"})
    a_keys = {k: v for k, v in etcd.get_prefix(f"{prefix}/local/cluster/svc/default/a/").items()}
    rev = etcd.revision()
    time.sleep(1.5)  # a periodic resync rewrites nothing
    assert etcd.revision() == rev
    assert first.stop() == 0
    api.delete("services", "default", "b")  # while no bridge runs
    env.bridge()
    env.expect("b.default." + SVC, "A", NX)
    env.expect("_http._tcp.b.default." + SVC, "SRV", NX)
    env.expect("2.7.96.10.in-addr.arpa.", "PTR", NX)
    env.expect("a.default." + SVC, "A", {"10.96.7.1"})
    assert etcd.get_prefix(f"{prefix}/local/cluster/svc/default/a/") == a_keys
    for k, v in foreign.items():
        assert etcd.get(k) == v.encode(), k
    env.expect("1.2.0.192.in-addr.arpa.", "PTR", {"manual.example."})


def test_etcd_restart(kube: FakeKubeAPI, fresh_etcd: EtcdServer, skyserve: Callable[..., Any],
                      tmp_path: Path) -> None:
    for env in make_env(kube, fresh_etcd, "/skydns", skyserve, tmp_path):
        kube.upsert("services", service("default", "s", ["10.96.8.1"]))
        bridge = env.bridge()
        env.expect("s.default." + SVC, "A", {"10.96.8.1"})
        fresh_etcd.stop()
        kube.upsert("services", service("default", "s", ["10.96.8.2"]))
        kube.upsert("services", service("default", "t", ["10.96.8.3"]))
        time.sleep(1.0)
        assert bridge.running and bridge.status("/healthz")[0] == 200
        fresh_etcd.start()
        env.expect("s.default." + SVC, "A", {"10.96.8.2"}, timeout=20)
        env.expect("t.default." + SVC, "A", {"10.96.8.3"}, timeout=10)
        assert bridge.status("/readyz")[0] == 200


def synced(bridge: BridgeProcess) -> bool:
    return bridge.metric("kube2etcd_synced") == 1


def test_leader_failover(kube: FakeKubeAPI, fresh_etcd: EtcdServer,
                         skyserve: Callable[..., Any], tmp_path: Path) -> None:
    for env in make_env(kube, fresh_etcd, "/skydns", skyserve, tmp_path):
        kube.upsert("services", service("default", "s", ["10.96.9.1"]))
        args = ("--leader-elect", "--leader-lease-ttl", "2s")
        one = env.bridge(*args, name="one")
        env.expect("s.default." + SVC, "A", {"10.96.9.1"})
        two = env.bridge(*args, name="two")
        leaders = [b for b in (one, two) if b.metric("kube2etcd_leader") == 1]
        assert leaders == [one]
        assert two.status("/readyz") == (200, "standby\n")
        assert one.metric("kube2etcd_synced") == 1 and two.metric("kube2etcd_synced") == 0
        assert one.metric("kube2etcd_leader_transitions_total") == 1
        assert (one.metric('kube2etcd_etcd_operations_total{op="lease",result="ok"}') or 0) >= 1
        assert two.metric('kube2etcd_watch_restarts_total{resource="services"}') == 0
        one.kill()  # no chance to release the lease
        killed = time.monotonic()
        kube.upsert("services", service("default", "s", ["10.96.9.2"]))
        env.expect("s.default." + SVC, "A", {"10.96.9.2"}, timeout=10)
        took = time.monotonic() - killed
        assert took < 2 + 2, f"standby took {took:.1f}s to take over"  # TTL + poll + slack
        assert two.metric("kube2etcd_leader") == 1
        assert two.metric("kube2etcd_leader_transitions_total") == 1
        assert wait_for(functools.partial(synced, two), 5)
        # A clean stop hands over at once.
        three = env.bridge(*args, name="three")
        assert two.stop() == 0
        kube.upsert("services", service("default", "s", ["10.96.9.3"]))
        assert env.expect("s.default." + SVC, "A", {"10.96.9.3"}, timeout=5) < 1.5
        assert three.metric("kube2etcd_leader") == 1
