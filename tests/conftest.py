"""Shared pytest fixtures: real etcd servers (plain, TLS-only, auth-enabled), per-test key
prefixes, skyserve processes, etcdctl, fake DNS upstreams."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path

import pytest

from tests.support.dns_upstream import DnsUpstream
from tests.support.etcd_server import EtcdServer, find_etcd_binary, find_etcdctl_binary, started
from tests.support.netutil import free_port
from tests.support.secure_etcd import PASSWORD, Certs, TlsEtcd, make_certs, run_etcdctl
from tests.support.skyserve_proc import SkyserveProcess

__all__ = ["free_port"]

pytest_plugins = ("pytester", "tests.support.e2e_guard")

_NO_ETCD = "etcd binary not found: set $ETCD_BIN or install etcd on PATH"
_prefix_counter = itertools.count(1)

StartSkyserve = Callable[..., SkyserveProcess]


@pytest.fixture(scope="session")
def etcd_binary() -> str:
    """Path of the etcd binary; skips the test when there is none."""
    binary = find_etcd_binary()
    if binary is None:
        pytest.skip(_NO_ETCD)
    return binary


@pytest.fixture(scope="session")
def etcd(etcd_binary: str) -> Iterator[EtcdServer]:
    """One etcd shared by the whole session. Do not stop/pause/compact it."""
    yield from started(EtcdServer("session", binary=etcd_binary))


@pytest.fixture
def fresh_etcd(etcd_binary: str) -> Iterator[EtcdServer]:
    """A private etcd for one test (free to stop/restart/pause/compact)."""
    yield from started(EtcdServer("fresh", binary=etcd_binary))


@pytest.fixture
def clean_prefix(etcd: EtcdServer) -> Iterator[str]:
    """A unique key prefix (/skydns-tNNNNN) in the session etcd, deleted afterwards.

    Fixed width, so no prefix is a string prefix of another one.
    """
    prefix = f"/skydns-t{next(_prefix_counter):05d}"
    yield prefix
    if etcd.running and not etcd.paused:
        etcd.delete_prefix(prefix + "/")
        etcd.delete(prefix)


@pytest.fixture(scope="module")
def etcdctl(etcd_binary: str) -> Callable[..., str]:
    """run(endpoint, *args, certs=None, user=None) -> output of `etcdctl` (API v3)."""
    binary = find_etcdctl_binary(etcd_binary)
    if binary is None:
        pytest.skip("etcdctl not found")
    return functools.partial(run_etcdctl, binary)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def tls_etcd(etcd_binary: str, certs: Certs) -> Iterator[TlsEtcd]:
    """An etcd serving https only, requiring a client certificate signed by ``certs.ca``."""
    yield from started(TlsEtcd("tls", binary=etcd_binary, certs=certs))


@pytest.fixture(scope="module")
def auth_etcd(etcd_binary: str, etcdctl: Callable[..., str]) -> Iterator[EtcdServer]:
    """A plain-http etcd with authentication enabled: user root / PASSWORD."""
    server = EtcdServer("auth", binary=etcd_binary)
    try:
        server.start()
        etcdctl(server.endpoint, "user", "add", f"root:{PASSWORD}")
        etcdctl(server.endpoint, "role", "add", "root")
        etcdctl(server.endpoint, "user", "grant-role", "root", "root")
        etcdctl(server.endpoint, "auth", "enable")
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def skyserve(
    etcd: EtcdServer, clean_prefix: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[StartSkyserve]:
    """Factory: start(zones=[...], extra_args=[...]) -> ready SkyserveProcess.

    Defaults: session etcd endpoint and the test's clean_prefix. Keyword
    overrides: etcd_endpoints (str or list), prefix, wait (False to skip
    wait_ready), ready_timeout, dns_port (default: a free port). Every started
    process is stopped at teardown.
    """
    started: list[SkyserveProcess] = []

    def start(
        zones: Sequence[str] = ("skydns.local.",),
        extra_args: Sequence[str] = (),
        *,
        etcd_endpoints: str | Sequence[str] | None = None,
        prefix: str | None = None,
        wait: bool = True,
        ready_timeout: float = 15.0,
        dns_port: int | None = None,
    ) -> SkyserveProcess:
        proc = SkyserveProcess(
            etcd_endpoints if etcd_endpoints is not None else etcd.endpoint,
            zones,
            prefix=prefix if prefix is not None else clean_prefix,
            extra_args=extra_args,
            log_dir=tmp_path,
            dns_port=dns_port,
        )
        started.append(proc)
        proc.start()
        if wait:
            proc.wait_ready(ready_timeout)
        return proc

    yield start
    failed = getattr(getattr(request.node, "rep_call", None), "failed", False)
    errors: list[BaseException] = []
    for proc in reversed(started):
        try:
            proc.stop()
        except BaseException as exc:  # keep stopping the others
            errors.append(exc)
        if failed:
            print(f"----- {proc!r} log ({proc.log_path}) -----\n{proc.log_tail(200)}")
    if errors:
        raise errors[0]


@pytest.fixture
def dns_upstream() -> Iterator[Callable[..., DnsUpstream]]:
    """Factory: start(port=0, **settings) -> a running DnsUpstream on 127.0.0.1.

    Keyword arguments are DnsUpstream's (host, mode, delay). Every server is closed at
    teardown.
    """
    started: list[DnsUpstream] = []

    def start(port: int = 0, **settings: object) -> DnsUpstream:
        server = DnsUpstream(port, **settings)  # type: ignore[arg-type]
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Expose the call-phase report as item.rep_call (fixtures dump logs on failure)."""
    rep = yield
    if rep.when == "call":
        item.rep_call = rep  # type: ignore[attr-defined]
    return rep
