"""skyserve against a secured or replicated etcd, end to end.

TLS with client certificates, user/password authentication, and a 3-member cluster whose
members are killed under a running server. Real etcd processes, the real server process,
dnspython queries. Records in the auth-enabled etcd are written with etcdctl: the
helpers' etcd3 client is the server's own client library and must not hide its faults.
"""

from __future__ import annotations

import functools
import http.client
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import dns.message
import dns.rcode
import grpc
import pytest

from tests.support import polling
from tests.support.dnsutil import addresses, key
from tests.support.etcd_server import EtcdServer, start_cluster
from tests.support.netutil import http_get
from tests.support.secure_etcd import PASSWORD, Certs, TlsEtcd
from tests.support.skyserve_proc import REPO_ROOT, SkyserveProcess

pytestmark = pytest.mark.e2e

Start = Callable[..., SkyserveProcess]
ZONES = ("skydns.test.",)
FAST = ["--etcd-timeout", "1", "--etcd-probe-interval", "0.5"]
wait_for = functools.partial(polling.wait_for, step=0.05)  # polls every 50 ms


def answers(proc: SkyserveProcess, name: str, expected: list[str]) -> Callable[[], bool]:
    return lambda: addresses(proc.query(name)) == expected


def server_output(proc: SkyserveProcess) -> str:
    """What the server itself logged (without the harness's "=== start <argv>" line)."""
    return "\n".join(line for line in proc.log_text().splitlines() if not line.startswith("==="))


def assert_stays_unready(proc: SkyserveProcess, zone_name: str) -> str:
    """The server is alive and answers, but never becomes ready; returns the /ready body."""
    assert wait_for(proc.is_healthy, 10), proc.log_tail()
    assert wait_for(lambda: "etcd unavailable" in proc.log_text(), 10), proc.log_tail()
    time.sleep(1.5)  # several more connection attempts, all failing
    assert proc.running, proc.log_tail()
    assert proc.query(zone_name).rcode() == dns.rcode.SERVFAIL
    status, body = http_get(proc.ready_port, "/ready")
    assert status == 503 and "etcd" in body, body
    assert proc.running
    return body


def grpc_loaded(pid: int) -> list[int]:
    """The processes of a server (it and its workers) that have gRPC's library mapped: a
    serving skyserve reads etcd through its JSON gateway and must never load gRPC (~16 MiB
    of a 100 MiB budget, skydns/etcdrange.py)."""
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        pids = [pid, *map(int, f.read().split())]
    return [p for p in pids if "cygrpc" in Path(f"/proc/{p}/maps").read_text()]


# ------------------------------------------------------------------------------ TLS


def tls_args(certs: Certs) -> list[str]:
    return [*FAST, "--etcd-ca", str(certs.ca), "--etcd-cert", str(certs.client),
            "--etcd-key", str(certs.client_key)]


def test_tls_etcd_is_really_tls_only(tls_etcd: TlsEtcd, etcdctl: Callable[..., str],
                                     certs: Certs) -> None:
    """Sanity check of the set-up: plain http gets no health, etcdctl with the certs does."""
    assert tls_etcd.is_healthy()
    try:
        plain = http_get(tls_etcd.client_port, "/health", timeout=2)[0]
    except (OSError, http.client.HTTPException):
        plain = None
    assert plain != 200
    assert "is healthy" in etcdctl(tls_etcd.endpoint, "endpoint", "health", certs=certs)


# With workers, the supervisor's TLS client loads and is closed before the fork; each
# worker then opens its own for its watch.
@pytest.mark.parametrize("workers", [[], ["--workers", "2"]])
def test_tls_with_client_certificate(tls_etcd: TlsEtcd, clean_prefix: str, skyserve: Start,
                                     etcdctl: Callable[..., str], certs: Certs,
                                     workers: list[str]) -> None:
    tls_etcd.put(key(clean_prefix, "a.tls.skydns.test"), '{"host":"10.10.0.1"}')
    proc = skyserve(ZONES, [*tls_args(certs), *workers], etcd_endpoints=tls_etcd.endpoint)
    assert addresses(proc.query("tls.skydns.test")) == ["10.10.0.1"]
    # The watch works over TLS: a put afterwards (by etcdctl) and a delete are seen.
    etcdctl(tls_etcd.endpoint, "put", key(clean_prefix, "b.tls.skydns.test"),
            '{"host":"10.10.0.2"}', certs=certs)
    assert wait_for(lambda: addresses(proc.query("tls.skydns.test")) == ["10.10.0.1", "10.10.0.2"])
    tls_etcd.delete(key(clean_prefix, "a.tls.skydns.test"))
    assert wait_for(lambda: addresses(proc.query("tls.skydns.test")) == ["10.10.0.2"])
    assert proc.is_ready()
    assert proc.pid is not None and grpc_loaded(proc.pid) == []


def test_tls_without_a_usable_certificate_never_gets_ready(
    tls_etcd: TlsEtcd, clean_prefix: str, skyserve: Start, certs: Certs
) -> None:
    """No client certificate, or a CA that does not trust etcd: SERVFAIL, 503, still running."""
    tls_etcd.put(key(clean_prefix, "a.nocert.skydns.test"), '{"host":"10.11.0.1"}')
    no_cert = skyserve(ZONES, [*FAST, "--etcd-ca", str(certs.ca)],
                       etcd_endpoints=tls_etcd.endpoint, wait=False)
    wrong_ca = skyserve(ZONES, [*FAST, "--etcd-ca", str(certs.other_ca),
                                "--etcd-cert", str(certs.client), "--etcd-key",
                                str(certs.client_key)],
                        etcd_endpoints=tls_etcd.endpoint, wait=False)
    for proc in (no_cert, wrong_ca):
        assert_stays_unready(proc, "a.nocert.skydns.test")
        assert "etcd: loaded" not in proc.log_text()


def test_idle_watch_over_tls_is_not_restarted(
    tls_etcd: TlsEtcd, clean_prefix: str, skyserve: Start, certs: Certs
) -> None:
    """An idle but healthy watch must stay up: no reconnect (new TLS handshake) every second.

    The silent-watch probe must only count keys changed after the revision the server has
    seen; with nothing written, it has nothing unseen and must not restart the watch.
    """
    tls_etcd.put(key(clean_prefix, "a.idle.skydns.test"), '{"host":"10.12.0.1"}')
    tls_etcd.put(key(clean_prefix, "b.idle.skydns.test"), '{"host":"10.12.0.2"}')
    proc = skyserve(ZONES, tls_args(certs), etcd_endpoints=tls_etcd.endpoint)
    time.sleep(2.5)  # five probe intervals without a single write under the prefix
    output = server_output(proc)
    assert "watch silent" not in output and "etcd unavailable" not in output, output
    tls_etcd.put(key(clean_prefix, "c.idle.skydns.test"), '{"host":"10.12.0.3"}')
    assert wait_for(lambda: len(addresses(proc.query("idle.skydns.test"))) == 3, 2)


# ------------------------------------------------------------------ user / password


def test_auth_etcd_refuses_anonymous_clients(auth_etcd: EtcdServer) -> None:
    """Sanity check of the set-up: without credentials nothing can be read."""
    with pytest.raises(grpc.RpcError) as err:
        auth_etcd.get("/anything", retry_for=0)
    assert "user name is empty" in str(err.value)


def test_username_and_password(auth_etcd: EtcdServer, clean_prefix: str, skyserve: Start,
                               etcdctl: Callable[..., str]) -> None:
    root = f"root:{PASSWORD}"
    etcdctl(auth_etcd.endpoint, "put", key(clean_prefix, "a.auth.skydns.test"),
            '{"host":"10.13.0.1"}', user=root)
    proc = skyserve(ZONES, [*FAST, "--etcd-username", "root", "--etcd-password", PASSWORD],
                    etcd_endpoints=auth_etcd.endpoint, ready_timeout=10)
    assert addresses(proc.query("auth.skydns.test")) == ["10.13.0.1"]
    etcdctl(auth_etcd.endpoint, "put", key(clean_prefix, "b.auth.skydns.test"),
            '{"host":"10.13.0.2"}', user=root)
    assert wait_for(lambda: addresses(proc.query("auth.skydns.test")) == ["10.13.0.1", "10.13.0.2"])
    assert PASSWORD not in server_output(proc)
    assert proc.pid is not None and grpc_loaded(proc.pid) == []


def test_wrong_password_never_gets_ready(auth_etcd: EtcdServer, clean_prefix: str,
                                         skyserve: Start, etcdctl: Callable[..., str]) -> None:
    etcdctl(auth_etcd.endpoint, "put", key(clean_prefix, "a.badpw.skydns.test"),
            '{"host":"10.14.0.1"}', user=f"root:{PASSWORD}")
    proc = skyserve(ZONES, [*FAST, "--etcd-username", "root", "--etcd-password", "not-" + PASSWORD],
                    etcd_endpoints=auth_etcd.endpoint, wait=False)
    body = assert_stays_unready(proc, "a.badpw.skydns.test")
    assert "authentication failed" in body
    assert "not-" + PASSWORD not in server_output(proc) + body


@pytest.mark.parametrize("given", [["--etcd-username", "root"], ["--etcd-password", PASSWORD]])
def test_username_and_password_go_together(given: Sequence[str], tmp_path: Path) -> None:
    argv = SkyserveProcess("http://127.0.0.1:1", ZONES, extra_args=given, log_dir=tmp_path).argv()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    done = subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=10)
    assert done.returncode != 0
    assert "--etcd-password" in done.stderr and "--etcd-username" in done.stderr, done.stderr


# ------------------------------------------------------------------ several endpoints


class Querier(threading.Thread):
    """Asks one name every 50 ms and records every answer that is not the expected one."""

    def __init__(self, proc: SkyserveProcess, name: str, expected: list[str]) -> None:
        super().__init__(name="querier", daemon=True)
        self.proc, self.qname, self.expected = proc, name, expected
        self.count = 0
        self.failures: list[str] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(0.05):
            try:
                got = addresses(self.proc.query(self.qname, timeout=1.0))
            except Exception as exc:
                got = [repr(exc)]
            self.count += 1
            if got != self.expected:
                self.failures.append(f"{time.strftime('%H:%M:%S')} {got}")

    def __enter__(self) -> Querier:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop_event.set()
        self.join(5)


def member_in_use(pid: int, members: Sequence[EtcdServer]) -> EtcdServer | None:
    """The member our process has an established TCP connection to (from /proc), if any."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
        by_port = {m.client_port: m for m in members}
        for table in ("tcp", "tcp6"):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                fields = line.split()
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                if fields[3] == "01" and fields[9] in inodes and remote_port in by_port:
                    return by_port[remote_port]
    except OSError:
        pass
    return None


def wait_member_in_use(
    pid: int, members: Sequence[EtcdServer], timeout: float = 5.0
) -> EtcdServer | None:
    deadline = time.monotonic() + timeout
    while (found := member_in_use(pid, members)) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


@pytest.fixture
def cluster(etcd_binary: str) -> Iterator[list[EtcdServer]]:
    members = start_cluster(3, binary=etcd_binary, client_timeout=2.0)
    try:
        yield members
    finally:
        for m in members:
            m.cleanup()


def test_several_endpoints_survive_member_crashes(
    cluster: list[EtcdServer], clean_prefix: str, skyserve: Start
) -> None:
    """Kill a member skyserve is not using, then (after it is back) the one it is using.

    Which member it uses is read from /proc (its established TCP connection). Two members
    are never down at once (that would lose quorum). Answers must keep flowing throughout
    and each update must be picked up within 15 s.
    """
    stable = "a.ha.skydns.test"
    cluster[0].put(key(clean_prefix, stable), '{"host":"10.20.0.1"}')
    proc = skyserve(ZONES, FAST, etcd_endpoints=[m.endpoint for m in cluster])
    assert addresses(proc.query(stable)) == ["10.20.0.1"]
    assert proc.pid is not None
    with Querier(proc, stable, ["10.20.0.1"]) as querier:
        for step in (1, 2):
            in_use = wait_member_in_use(proc.pid, cluster)
            if step == 1:  # a member the server is not connected to
                victim = next(m for m in cluster if m is not in_use)
            else:  # the member the server is connected to
                assert in_use is not None, "cannot tell which member skyserve is connected to"
                victim = in_use
            victim.kill()
            killed_at = time.monotonic()
            survivor = next(m for m in cluster if m is not victim)
            name = f"n{step}.ha.skydns.test"
            address = f"10.20.1.{step}"
            survivor.put(key(clean_prefix, name), f'{{"host":"{address}"}}')
            assert wait_for(answers(proc, name, [address]), 15), (
                f"step {step}: update not seen after killing {victim.name}\n{proc.log_tail()}"
            )
            time.sleep(max(0.0, killed_at + 1.0 - time.monotonic()))  # >= 1 s of queries
            victim.start()
    assert querier.failures == [], querier.failures[:20]
    assert querier.count >= 20
    assert proc.is_ready()
    assert addresses(proc.query("ha.skydns.test")) == ["10.20.0.1", "10.20.1.1", "10.20.1.2"]
