"""The kube2etcd end-to-end set-up: the fake Kubernetes API, bridge processes writing to a
real etcd, and a skyserve answering from it; ``Env.expect`` waits for an answer to change."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dns.rcode
import dns.rdatatype

from kubefake import FakeKubeAPI
from tests.support.bridge_proc import BridgeProcess
from tests.support.etcd_server import EtcdServer
from tests.support.kubeconfig import write_kubeconfig
from tests.support.skyserve_proc import SkyserveProcess

ZONES = ("cluster.local.", "in-addr.arpa.", "ip6.arpa.")
NX = None  # expected answer: NXDOMAIN
SVC = "svc.cluster.local."
HTTP = [{"name": "http", "port": 80}]


class Env:
    def __init__(self, api: FakeKubeAPI, kubeconfig: Path, etcd: EtcdServer, prefix: str,
                 sky: SkyserveProcess, tmp: Path) -> None:
        self.api, self.kubeconfig, self.etcd, self.prefix = api, kubeconfig, etcd, prefix
        self.sky, self.tmp = sky, tmp
        self.bridges: list[BridgeProcess] = []

    def bridge(self, *args: str, wait: bool = True, name: str = "bridge") -> BridgeProcess:
        b = BridgeProcess(self.kubeconfig, self.etcd.endpoint, self.prefix, self.tmp, args, name)
        self.bridges.append(b)
        b.start()
        return b.wait_ready() if wait else b

    def answer(self, name: str, rdtype: str) -> set[str] | None:
        """The answer's records of that type as text (SRV without weight); None if NXDOMAIN."""
        msg = self.sky.query(name, rdtype)
        if msg.rcode() == dns.rcode.NXDOMAIN:
            return None
        want = dns.rdatatype.from_text(rdtype)
        out = set()
        for rrset in msg.answer:
            if rrset.rdtype == want:
                for rd in rrset:
                    text = rd.to_text()
                    if rdtype == "SRV":
                        text = f"{rd.port} {rd.target}"
                    out.add(text)
        return out

    def expect(self, name: str, rdtype: str, want: set[str] | None, timeout: float = 8.0) -> float:
        """Wait until the answer is `want`; returns how long it took."""
        start = time.monotonic()
        while True:
            got = self.answer(name, rdtype)
            if got == want:
                return time.monotonic() - start
            if time.monotonic() - start > timeout:
                logs = "\n".join(b.log_tail(15) for b in self.bridges)
                raise AssertionError(f"{name} {rdtype}: got {got}, want {want}\n{logs}")
            time.sleep(0.02)

    def stable(self, name: str, rdtype: str, want: set[str] | None, seconds: float) -> None:
        """Check that the answer stays `want` for a while."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            assert self.answer(name, rdtype) == want
            time.sleep(0.05)


def make_env(kube: FakeKubeAPI, etcd: EtcdServer, prefix: str, skyserve: Callable[..., Any],
             tmp_path: Path) -> Iterator[Env]:
    sky = skyserve(ZONES, ["--lameduck", "0s"], etcd_endpoints=etcd.endpoint, prefix=prefix)
    env = Env(kube, write_kubeconfig(tmp_path / "kubeconfig", kube.url), etcd, prefix, sky,
              tmp_path)
    try:
        yield env
    finally:
        failed = []
        for b in env.bridges:
            code = b.stop()
            if code not in (0, -9):
                failed.append(f"{b!r} exited {code}:\n{b.log_tail()}")
        assert not failed, failed
