"""The bridge against etcd set-ups beyond the plain one: TLS with client certificates,
user/password authentication, and an etcd replaced by an empty one behind its back.

The secured etcds, the certificates and etcdctl are the fixtures skyserve's security tests
use too (tests/conftest.py).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kubefake import FakeKubeAPI, endpoint_slice, service
from tests.support.bridge_env import HTTP, NX, SVC, ZONES, Env, make_env
from tests.support.bridge_proc import BridgeProcess
from tests.support.etcd_server import EtcdServer
from tests.support.kubeconfig import write_kubeconfig
from tests.support.secure_etcd import PASSWORD, Certs, TlsEtcd

pytestmark = pytest.mark.e2e


def secured_env(kube: FakeKubeAPI, etcd: EtcdServer, etcd_args: list[str], prefix: str,
                skyserve: Callable[..., Any], tmp_path: Path) -> Iterator[Env]:
    """An Env whose skyserve and bridges all use ``etcd_args`` to reach a secured etcd."""
    sky = skyserve(ZONES, ["--lameduck", "0s", *etcd_args], etcd_endpoints=etcd.endpoint,
                   prefix=prefix, ready_timeout=10)
    env = Env(kube, write_kubeconfig(tmp_path / "kubeconfig", kube.url), etcd, prefix, sky,
              tmp_path)
    try:
        yield env
    finally:
        for b in env.bridges:
            assert b.stop() == 0, b.log_tail()


def check_sync(env: Env, *bridge_args: str) -> None:
    """Start a bridge; its records, then a change and a delete, reach skyserve's answers."""
    api = env.api
    api.upsert("services", service("default", "web", ["10.96.20.1"], ports=HTTP))
    api.upsert("services", service("default", "db", headless=True, ports=HTTP))
    api.upsert("endpointslices", endpoint_slice("default", "db-1", "db", endpoints=[
        {"addresses": ["10.0.20.1"], "hostname": "db-0"}], ports=HTTP))
    bridge = env.bridge(*bridge_args)
    env.expect("web.default." + SVC, "A", {"10.96.20.1"})
    env.expect("db-0.db.default." + SVC, "A", {"10.0.20.1"})
    env.expect("1.20.0.10.in-addr.arpa.", "PTR", {"db-0.db.default." + SVC})
    env.expect("dns-version.cluster.local.", "TXT", {'"1.1.0"'})
    api.upsert("services", service("default", "web", ["10.96.20.2"], ports=HTTP))
    env.expect("web.default." + SVC, "A", {"10.96.20.2"})
    api.delete("services", "default", "db")
    env.expect("db-0.db.default." + SVC, "A", NX)
    assert bridge.status("/readyz") == (200, "ok\n")
    assert bridge.metric('kube2etcd_etcd_operations_total{op="txn",result="error"}') is None
    assert bridge.metric('kube2etcd_etcd_operations_total{op="load",result="error"}') is None


def test_tls_with_client_certificate(kube: FakeKubeAPI, tls_etcd: TlsEtcd,
                                     certs: Certs, clean_prefix: str,
                                     skyserve: Callable[..., Any], tmp_path: Path) -> None:
    assert tls_etcd.endpoint.startswith("https://")
    args = ["--etcd-ca", str(certs.ca), "--etcd-cert", str(certs.client),
            "--etcd-key", str(certs.client_key)]
    for env in secured_env(kube, tls_etcd, args, clean_prefix, skyserve, tmp_path):
        check_sync(env, *args)
        assert tls_etcd.get(f"{clean_prefix}/local/cluster/dns-version") is not None


def test_tls_without_the_client_certificate_never_writes(
    kube: FakeKubeAPI, tls_etcd: TlsEtcd, certs: Certs, clean_prefix: str,
    tmp_path: Path,
) -> None:
    kube.upsert("services", service("default", "web", ["10.96.21.1"]))
    with unready_bridge(kube, tls_etcd, clean_prefix, tmp_path, "--etcd-ca", str(certs.ca),
                        waiting_for="UNAVAILABLE") as bridge:
        assert bridge.status("/healthz")[0] == 200
    assert not tls_etcd.get_prefix(clean_prefix + "/")


def test_username_and_password_over_plain_http(
    kube: FakeKubeAPI, auth_etcd: EtcdServer, etcdctl: Callable[..., str], clean_prefix: str,
    skyserve: Callable[..., Any], tmp_path: Path,
) -> None:
    """Over http gRPC drops call credentials; the bridge's client must send the token anyway.

    With --leader-elect, so the lease (grant, keep-alive, guard in every transaction) goes
    through the authenticated client too.
    """
    assert auth_etcd.endpoint.startswith("http://")
    args = ["--etcd-username", "root", "--etcd-password", PASSWORD]
    for env in secured_env(kube, auth_etcd, args, clean_prefix, skyserve, tmp_path):
        check_sync(env, *args, "--leader-elect", "--leader-lease-ttl", "2s")
        bridge = env.bridges[0]
        assert bridge.metric("kube2etcd_leader") == 1
        assert PASSWORD not in bridge.log_text()
        root = f"root:{PASSWORD}"
        out = etcdctl(auth_etcd.endpoint, "get", "--prefix", "--keys-only",
                      f"{clean_prefix}/local/cluster/svc/default/web/", user=root)
        assert f"{clean_prefix}/local/cluster/svc/default/web/" in out


def test_wrong_password_never_writes(
    kube: FakeKubeAPI, auth_etcd: EtcdServer, etcdctl: Callable[..., str], clean_prefix: str,
    tmp_path: Path,
) -> None:
    kube.upsert("services", service("default", "web", ["10.96.22.1"]))
    with unready_bridge(kube, auth_etcd, clean_prefix, tmp_path, "--etcd-username", "root",
                        "--etcd-password", "not-it", waiting_for="authentication failed"
                        ) as bridge:
        assert "not-it" not in bridge.log_text()
    out = etcdctl(auth_etcd.endpoint, "get", "--prefix", "--keys-only", clean_prefix + "/",
                  user=f"root:{PASSWORD}")
    assert out.strip() == ""


@contextlib.contextmanager
def unready_bridge(kube: FakeKubeAPI, etcd: EtcdServer, prefix: str, tmp_path: Path,
                   *args: str, waiting_for: str) -> Iterator[BridgeProcess]:
    """A bridge that cannot use etcd: alive, not ready, saying why; stopped cleanly after."""
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kube.url)
    bridge = BridgeProcess(kubeconfig, etcd.endpoint, prefix, tmp_path, args).start()
    try:
        deadline = time.monotonic() + 10
        while waiting_for not in (reason := bridge.status("/readyz"))[1]:
            assert bridge.running and time.monotonic() < deadline, bridge.log_tail()
            time.sleep(0.1)
        assert reason[0] == 503 and "waiting for the first write to etcd" in reason[1]
        assert bridge.running
        yield bridge
    finally:
        assert bridge.stop() == 0, bridge.log_tail()


@contextlib.contextmanager
def frozen(pid: int | None) -> Iterator[None]:
    """SIGSTOP a process we started (by its PID) for the block: it sees nothing happen."""
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


@pytest.mark.parametrize("args", [(), ("--leader-elect", "--leader-lease-ttl", "2s")],
                         ids=["single", "leader-elect"])
def test_etcd_replaced_by_an_empty_one_is_rewritten(
    kube: FakeKubeAPI, fresh_etcd: EtcdServer, skyserve: Callable[..., Any], tmp_path: Path,
    args: tuple[str, ...],
) -> None:
    """The etcd sidecar is replaced by a fresh, empty one on the same address while the
    bridge is idle (frozen, so it cannot even see a connection error): the bridge notices
    within seconds, without the 300 s resync, and writes everything again. With leader
    election the leader key is gone too: the bridge must win it back and then write."""
    for env in make_env(kube, fresh_etcd, "/skydns", skyserve, tmp_path):
        kube.upsert("services", service("default", "web", ["10.96.23.1"], ports=HTTP))
        kube.upsert("services", service("default", "db", headless=True, ports=HTTP))
        kube.upsert("endpointslices", endpoint_slice("default", "db-1", "db", endpoints=[
            {"addresses": ["10.0.23.1"], "hostname": "db-0"}], ports=HTTP))
        bridge = env.bridge(*args)  # the default --resync-period of 300s
        env.expect("db-0.db.default." + SVC, "A", {"10.0.23.1"})
        before = fresh_etcd.get_prefix("/skydns/")
        assert len(before) == 7  # web: A, SRV, PTR; db-0: A, SRV, PTR; dns-version
        leader = fresh_etcd.get_prefix("/kube2etcd/")
        with frozen(bridge.pid):
            fresh_etcd.stop()
            shutil.rmtree(fresh_etcd.data_dir)
            fresh_etcd.start()
            assert fresh_etcd.get_prefix("/skydns/") == {}
        replaced = time.monotonic()
        # A skyserve started on the empty new etcd: whatever it answers, the bridge rewrote.
        sky = skyserve(ZONES, ["--lameduck", "0s"], etcd_endpoints=fresh_etcd.endpoint,
                       prefix="/skydns")
        env.sky = sky
        env.expect("db-0.db.default." + SVC, "A", {"10.0.23.1"}, timeout=10)
        env.expect("web.default." + SVC, "A", {"10.96.23.1"}, timeout=1)
        env.expect("1.23.0.10.in-addr.arpa.", "PTR", {"db-0.db.default." + SVC}, timeout=1)
        took = time.monotonic() - replaced
        assert took < 10, f"records back after {took:.1f}s"
        assert fresh_etcd.get_prefix("/skydns/") == before
        assert fresh_etcd.get_prefix("/kube2etcd/") == leader  # its lock back, if it had one
        lost = sum(bridge.metric(f'kube2etcd_etcd_state_lost_total{{reason="{r}"}}') or 0
                   for r in ("cluster", "revision", "missing"))
        text = bridge.log_text()
        # Normally the probe finds out ("etcd lost the records"). With leader election the
        # leader may first find its lease gone; and a request racing the resume may fail on
        # the dead connection. Each leads to the full rewrite checked above; the probe on
        # its own is checked deterministically in test_reconcile.py.
        assert lost == 1 or "stepping down" in text or "will read etcd back" in text, text
        if lost:
            assert "etcd lost the records the bridge wrote" in text
        # Still in step afterwards: an incremental change goes through.
        kube.upsert("services", service("default", "web", ["10.96.23.2"], ports=HTTP))
        env.expect("web.default." + SVC, "A", {"10.96.23.2"})
