"""reconcile.py against a real etcd: minimal diffs, ownership, orphans, partial views."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import pytest

from kube2etcd.etcdcheck import lost_state
from kube2etcd.metrics import Metrics
from kube2etcd.objects import ENDPOINT_SLICES, SERVICES, Changed, Listed, Obj, Source
from kube2etcd.reconcile import Reconciler, ReconcileSettings
from kube2etcd.records import (
    CLUSTER_IP,
    HEADLESS,
    Domain,
    Endpoint,
    EndpointGroup,
    EndpointSet,
    Port,
    Service,
    fnv32a,
)
from skydns.etcd import EtcdClient, EtcdSettings, Header, KeyValue
from tests.support.etcd_server import EtcdServer

SOURCES = [Source(SERVICES), Source(ENDPOINT_SLICES)]
HTTP = Port("http", 80, "TCP")


def svc(name: str, ip: str, ns: str = "default") -> Service:
    return Service(ns, name, CLUSTER_IP, (ip,), ports=(HTTP,))


def wait_for(cond: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


class Bridge:
    """A Reconciler fed by hand, as the watchers would feed it."""

    def __init__(self, etcd: EtcdServer, prefix: str, **settings: float) -> None:
        self.zone = Domain(("cluster", "local"), prefix, 30)
        self.metrics = Metrics()
        self.rec = Reconciler(
            self.zone, EtcdSettings(endpoints=(etcd.endpoint,), timeout=2.0), SOURCES,
            self.metrics, ReconcileSettings(resync_period=settings.get("resync", 0.0),
                                            probe_interval=settings.get("probe", 2.0),
                                            max_backoff=0.2),
        )
        self.rec.start()

    def listed(self, source: Source, *objs: Obj) -> None:
        self.rec.submit(Listed(source, {(o.namespace, o.name): o for o in objs}, time.monotonic()))

    def changed(self, source: Source, obj: Obj | None, key: tuple[str, str] | None = None) -> None:
        assert obj is not None or key is not None
        k = key or (obj.namespace, obj.name)  # type: ignore[union-attr]
        self.rec.submit(Changed(source, k, obj, time.monotonic()))

    def settle(self, passes: int | None = None) -> None:
        """Wait until everything submitted has been written."""
        if passes is not None:
            wait_for(lambda: self.rec.full_passes >= passes, what=f"{passes} full passes")
        wait_for(lambda: self.rec._queue.empty() and not self.rec.dirty and
                 self.rec.state is not None, what="an idle reconciler")
        time.sleep(0.1)
        wait_for(lambda: self.rec._queue.empty() and not self.rec.dirty, what="idle again")

    def stop(self) -> None:
        self.rec.stop()

    def sample(self, name: str, *labels: str) -> float:
        value = self.metrics.registry.get_sample_value(name, dict(zip(
            ("op",) if name.endswith("changes_total") else ("kind",), labels, strict=False)))
        return value or 0.0


@pytest.fixture
def bridge(etcd: EtcdServer, clean_prefix: str) -> Iterator[Callable[..., Bridge]]:
    made: list[Bridge] = []

    def make(**settings: float) -> Bridge:
        b = Bridge(etcd, clean_prefix, **settings)
        made.append(b)
        return b

    yield make
    for b in made:
        b.stop()


def owned(etcd: EtcdServer, prefix: str) -> dict[str, dict[str, object]]:
    return {k: json.loads(v) for k, v in etcd.get_prefix(prefix + "/").items()}


@pytest.mark.e2e
def test_first_sync_writes_everything_with_the_marker(
    bridge: Callable[..., Bridge], etcd: EtcdServer, clean_prefix: str
) -> None:
    b = bridge()
    b.listed(SOURCES[0], svc("a", "10.0.0.1"), svc("b", "10.0.0.2"))
    b.listed(SOURCES[1])
    b.settle(passes=1)
    data = owned(etcd, clean_prefix)
    svc_dir = f"{clean_prefix}/local/cluster/svc/default"
    assert data[f"{svc_dir}/a/{fnv32a('10.0.0.1')}"]["host"] == "10.0.0.1"
    assert data[f"{clean_prefix}/local/cluster/dns-version"]["text"] == "1.1.0"
    assert all(v["kube2etcd"] == "cluster.local" and v["ttl"] == 30 for v in data.values())
    assert len(data) == 7  # 2 x (A, SRV, PTR) + dns-version
    assert b.rec.readiness() == (True, "ok")
    assert b.sample("kube2etcd_records", "a") == 2
    assert b.sample("kube2etcd_records", "ptr") == 2


@pytest.mark.e2e
def test_nothing_is_written_or_deleted_from_a_partial_view(
    bridge: Callable[..., Bridge], etcd: EtcdServer, clean_prefix: str
) -> None:
    orphan = f"{clean_prefix}/local/cluster/svc/default/gone/{fnv32a('10.9.9.9')}"
    etcd.put(orphan, '{"host":"10.9.9.9","kube2etcd":"cluster.local"}')
    b = bridge()
    b.listed(SOURCES[0], svc("a", "10.0.0.1"))  # the slices have not been listed yet
    time.sleep(0.5)
    assert set(etcd.get_prefix(clean_prefix + "/")) == {orphan}
    ready, reason = b.rec.readiness()
    assert not ready and "endpointslices" in reason
    b.listed(SOURCES[1])
    b.settle(passes=1)
    keys = set(etcd.get_prefix(clean_prefix + "/"))
    assert orphan not in keys and len(keys) == 4


@pytest.mark.e2e
def test_orphans_of_an_earlier_run_are_removed_and_foreign_keys_kept(
    bridge: Callable[..., Bridge], etcd: EtcdServer, clean_prefix: str
) -> None:
    base = f"{clean_prefix}/local/cluster/svc/default"
    wanted = f"{base}/a/{fnv32a('10.0.0.1')}"
    foreign = {
        wanted: '{"host":"192.0.2.1"}',  # a key we want, held by someone else
        f"{base}/manual/x": '{"host":"192.0.2.2"}',  # etcdctl, inside svc/
        f"{base}/other/y": '{"host":"192.0.2.3","kube2etcd":"other.domain"}',  # another bridge
        f"{clean_prefix}/arpa/in-addr/192/0/2/1/z": '{"host":"x.example."}',
        f"{clean_prefix}/local/cluster/extdns/w": '{"host":"192.0.2.4"}',
    }
    for k, v in foreign.items():
        etcd.put(k, v)
    first = bridge()
    first.listed(SOURCES[0], svc("a", "10.0.0.1"), svc("old", "10.0.0.7"))
    first.listed(SOURCES[1])
    first.settle(passes=1)
    assert etcd.get(wanted) == foreign[wanted].encode()
    first.stop()
    # 'old' is deleted while no bridge runs; the next one removes its records.
    second = bridge()
    second.listed(SOURCES[0], svc("a", "10.0.0.1"))
    second.listed(SOURCES[1])
    second.settle(passes=1)
    data = etcd.get_prefix(clean_prefix + "/")
    assert not [k for k in data if "/old/" in k or "/10/0/0/7/" in k]
    for k, v in foreign.items():
        assert data[k] == v.encode(), k
    assert f"{base}/a/_tcp/_http/{fnv32a('a.default.svc.cluster.local.')}" in data


@pytest.mark.e2e
def test_changes_write_only_the_difference(
    bridge: Callable[..., Bridge], etcd: EtcdServer, clean_prefix: str
) -> None:
    b = bridge()
    b.listed(SOURCES[0], *(svc(f"s{i}", f"10.0.1.{i}") for i in range(20)))
    b.listed(SOURCES[1])
    b.settle(passes=1)
    before = b.sample("kube2etcd_reconcile_changes_total", "put")
    rev = etcd.revision()
    b.changed(SOURCES[0], svc("s3", "10.0.2.3"))
    b.settle()
    # A (new IP) and PTR (new IP) put, old A and PTR deleted, SRV unchanged: one transaction.
    assert b.sample("kube2etcd_reconcile_changes_total", "put") - before == 2
    assert b.sample("kube2etcd_reconcile_changes_total", "delete") == 2
    assert etcd.revision() == rev + 1
    base = f"{clean_prefix}/local/cluster/svc/default/s3"
    keys = set(etcd.get_prefix(base + "/"))
    assert f"{base}/{fnv32a('10.0.2.3')}" in keys and f"{base}/{fnv32a('10.0.1.3')}" not in keys
    b.changed(SOURCES[0], svc("s3", "10.0.2.3"))  # no change at all
    b.settle()
    assert etcd.revision() == rev + 1
    b.changed(SOURCES[0], None, ("default", "s4"))
    b.settle()
    assert not etcd.get_prefix(f"{clean_prefix}/local/cluster/svc/default/s4/")


@pytest.mark.e2e
def test_headless_service_larger_than_one_transaction(
    bridge: Callable[..., Bridge], etcd: EtcdServer, clean_prefix: str
) -> None:
    b = bridge()
    service = Service("ns", "big", HEADLESS, ports=(HTTP,))
    eps = tuple(Endpoint((f"10.1.{i // 250}.{i % 250}",)) for i in range(150))
    b.listed(SOURCES[0], service)
    b.listed(SOURCES[1], EndpointSet("ns", "big-1", "big", (EndpointGroup(eps, (HTTP,)),)))
    b.settle(passes=1)
    data = etcd.get_prefix(f"{clean_prefix}/local/cluster/svc/ns/big/")
    assert len(data) == 300  # A + SRV per endpoint
    b.changed(SOURCES[1], EndpointSet("ns", "big-1", "big", (EndpointGroup(eps[:10], (HTTP,)),)))
    b.settle()
    assert len(etcd.get_prefix(f"{clean_prefix}/local/cluster/svc/ns/big/")) == 20


@pytest.mark.e2e
def test_a_key_taken_over_by_another_writer_is_left_alone(
    bridge: Callable[..., Bridge], etcd: EtcdServer, clean_prefix: str
) -> None:
    b = bridge()
    b.listed(SOURCES[0], svc("a", "10.0.0.1"))
    b.listed(SOURCES[1])
    b.settle(passes=1)
    key = f"{clean_prefix}/local/cluster/svc/default/a/{fnv32a('10.0.0.1')}"
    etcd.put(key, '{"host":"192.0.2.9"}')  # someone rewrites our key without the marker
    b.changed(SOURCES[0], None, ("default", "a"))  # the delete must not touch it
    b.settle(passes=2)
    assert etcd.get(key) == b'{"host":"192.0.2.9"}'
    assert not [k for k in etcd.get_prefix(clean_prefix + "/") if "/10/0/0/1/" in k]


@pytest.mark.e2e
def test_periodic_resync_repairs_drift(
    bridge: Callable[..., Bridge], etcd: EtcdServer, clean_prefix: str
) -> None:
    b = bridge(resync=1.0)
    b.listed(SOURCES[0], svc("a", "10.0.0.1"))
    b.listed(SOURCES[1])
    b.settle(passes=1)
    key = f"{clean_prefix}/local/cluster/svc/default/a/{fnv32a('10.0.0.1')}"
    value = etcd.get(key)
    etcd.delete(key)  # lost behind our back
    wait_for(lambda: etcd.get(key) == value, timeout=5, what="the resync to restore the key")


@pytest.mark.e2e
def test_etcd_apply_chunks_puts_before_deletes_and_checks_expectations(
    etcd: EtcdServer, clean_prefix: str
) -> None:
    client = EtcdClient(EtcdSettings(endpoints=(etcd.endpoint,)))
    try:
        keys = [f"{clean_prefix}/k{i:03d}" for i in range(300)]
        puts = {k: "v1" for k in keys}
        assert client.apply(puts, [], expect=dict.fromkeys(keys)) == 300  # 3 transactions
        assert len(etcd.get_prefix(clean_prefix + "/")) == 300
        etcd.put(keys[200], "someone else")
        rev = etcd.revision()
        again = {k: "v2" for k in keys}
        done = client.apply(again, [], expect=dict.fromkeys(keys, "v1"))
        assert done == 128  # the first transaction; the second failed as a whole
        assert etcd.get(keys[150]) == b"v1" and etcd.get(keys[200]) == b"someone else"
        # the third was pipelined behind the second: applied or not, never more
        assert etcd.revision() in (rev + 1, rev + 2)
        first = client.get(keys[0])
        assert first is not None and first.value == b"v2"
        assert client.apply({}, keys[:150]) == 150
        assert client.get(keys[0]) is None
        assert client.put_if_absent(keys[0], "x") and not client.put_if_absent(keys[0], "y")
    finally:
        client.close()


@pytest.mark.e2e
def test_endpoint_ptrs_of_cluster_ip_services_follow_their_endpoints(
    bridge: Callable[..., Bridge], etcd: EtcdServer, clean_prefix: str
) -> None:
    b = bridge()
    web = Service("default", "web", CLUSTER_IP, ("10.96.0.1",), ports=(HTTP,))
    api = Service("default", "api", CLUSTER_IP, ("10.96.0.2",), ports=(HTTP,))
    ready, unready = Endpoint(("10.0.0.1",)), Endpoint(("10.0.0.2",), ready=False)

    def eps(svc: str, *endpoints: Endpoint) -> EndpointSet:
        return EndpointSet("default", f"{svc}-1", svc, (EndpointGroup(endpoints, (HTTP,)),))

    def ptrs(ip: str) -> dict[str, str]:
        found = etcd.get_prefix(f"{clean_prefix}/arpa/in-addr/{ip.replace('.', '/')}/")
        return {k.rsplit("/", 1)[1]: json.loads(v)["host"] for k, v in found.items()}

    b.listed(SOURCES[0], web, api)
    b.listed(SOURCES[1], eps("web", ready, unready), eps("api", ready))
    b.settle(passes=1)
    assert ptrs("10.0.0.1") == {fnv32a("default/web"): "10-0-0-1.web.default.svc.cluster.local.",
                                fnv32a("default/api"): "10-0-0-1.api.default.svc.cluster.local."}
    assert ptrs("10.0.0.2") == {}  # not ready
    # The endpoint's own name, as CoreDNS answers it (issue 10: there was none).
    [name_value] = etcd.get_prefix(f"{clean_prefix}/local/cluster/svc/default/web/10-0-0-1/"
                                   ).values()
    assert json.loads(name_value)["host"] == "10.0.0.1"
    b.changed(SOURCES[1], eps("web", Endpoint(("10.0.0.2",))))  # 10.0.0.1 leaves web
    b.settle()
    assert ptrs("10.0.0.1") == {fnv32a("default/api"): "10-0-0-1.api.default.svc.cluster.local."}
    assert ptrs("10.0.0.2") == {fnv32a("default/web"): "10-0-0-2.web.default.svc.cluster.local."}
    b.changed(SOURCES[1], None, ("default", "api-1"))  # the slice goes away
    b.changed(SOURCES[0], None, ("default", "web"))  # and the service
    b.settle()
    assert ptrs("10.0.0.1") == ptrs("10.0.0.2") == {}
    assert ptrs("10.96.0.2") == {fnv32a("default/api"): "api.default.svc.cluster.local."}


@pytest.mark.e2e
def test_foreign_keys_skipped_metric(
    bridge: Callable[..., Bridge], etcd: EtcdServer, clean_prefix: str
) -> None:
    base = f"{clean_prefix}/local/cluster/svc/default"
    held = f"{base}/a/{fnv32a('10.0.0.1')}"
    etcd.put(held, '{"host":"192.0.2.1"}')  # a key we want, held by someone else
    b = bridge(resync=1.0)
    b.listed(SOURCES[0], svc("a", "10.0.0.1"), svc("b", "10.0.0.2"))
    b.listed(SOURCES[1])
    b.settle(passes=1)
    assert b.sample("kube2etcd_foreign_keys_skipped_total") == 1
    assert b.sample("kube2etcd_foreign_keys") == 1
    b.settle(passes=2)  # a periodic resync finds the same key: not counted again
    assert b.sample("kube2etcd_foreign_keys_skipped_total") == 1
    taken = f"{base}/b/{fnv32a('10.0.0.3')}"
    etcd.put(taken, '{"host":"192.0.2.2"}')  # a key we are about to want, taken meanwhile
    b.changed(SOURCES[0], svc("b", "10.0.0.3"))  # its write conflicts, then is skipped
    wait_for(lambda: b.sample("kube2etcd_foreign_keys_skipped_total") == 2, timeout=5,
             what="the second foreign key to be counted")
    assert b.sample("kube2etcd_foreign_keys") == 2
    etcd.delete(held)  # freed: the next resync writes it
    wait_for(lambda: b.sample("kube2etcd_foreign_keys") == 1, timeout=5, what="the key freed")
    assert json.loads(etcd.get(held) or b"{}").get("kube2etcd") == "cluster.local"
    assert etcd.get(taken) == b'{"host":"192.0.2.2"}'


@pytest.mark.e2e
def test_probe_rewrites_records_etcd_lost_without_an_error(
    bridge: Callable[..., Bridge], etcd: EtcdServer, clean_prefix: str
) -> None:
    b = bridge(resync=0.0, probe=0.2)  # no periodic resync: only the probe can notice
    b.listed(SOURCES[0], svc("a", "10.0.0.1"))
    b.listed(SOURCES[1])
    b.settle(passes=1)
    before = etcd.get_prefix(clean_prefix + "/")
    etcd.delete_prefix(clean_prefix + "/")  # everything gone, no error seen by the bridge
    wait_for(lambda: etcd.get_prefix(clean_prefix + "/") == before, timeout=3,
             what="the records to be rewritten")
    lost = b.metrics.registry.get_sample_value("kube2etcd_etcd_state_lost_total",
                                               {"reason": "missing"})
    assert lost == 1 and b.rec.full_passes == 2
    assert (b.metrics.registry.get_sample_value("kube2etcd_etcd_operations_total",
                                                {"op": "probe", "result": "ok"}) or 0) >= 1


def test_lost_state_verdicts() -> None:
    header = Header(cluster_id=7, member_id=1, revision=100, raft_term=2)
    kv = KeyValue("/k", b"v", 90)
    assert lost_state("v", kv, header, 7, 100) == ""
    assert lost_state(None, None, header, None, 0) == ""  # nothing known yet
    assert lost_state("v", kv, header, 8, 100) == "cluster"  # another etcd cluster answers
    assert lost_state("v", kv, header, 7, 101) == "revision"  # restored from a backup
    assert lost_state("v", None, header, 7, 50) == "missing"  # wiped, or deleted by hand
    assert lost_state(None, None, header, 7, 50) == ""  # the key was not ours to expect
