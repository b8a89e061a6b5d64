"""The kube-dns pod on loopback, watched by a real Prometheus: what tests/monitoring checks
the rules and the dashboard against, and what scripts/dashboard-snapshot draws.

One skyserve (zone cluster.local., forwarding to three upstreams: one that answers, one that
answers SERVFAIL, one that never answers) and one kube2etcd (--leader-elect, against the fake
Kubernetes API) share an etcd; Prometheus scrapes both as the jobs "skyserve" and "kube2etcd"
and evaluates manifests/monitoring/rules.yaml. `Traffic.step` sends one round of every kind of
query the dashboard shows and makes one Kubernetes change, so every panel has data.

`python -m tests.support.monitoring_stack` (cwd the repository, scripts/ on PYTHONPATH) runs
the same stack for a program that must not import test code (scripts/dashboard-snapshot):
it prints where it answers as one JSON line, then drives `Traffic` until stdin closes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import dns.exception

from kubefake import FakeKubeAPI, endpoint_slice, service
from tests.support.bridge_proc import BridgeProcess
from tests.support.dns_upstream import DnsUpstream
from tests.support.etcd_server import EtcdServer, started
from tests.support.kubeconfig import write_kubeconfig
from tests.support.procutil import REPO_ROOT
from tests.support.prometheus_proc import PrometheusProcess
from tests.support.skyserve_proc import SkyserveProcess

__all__ = ["LOAD_MIX", "MONITORING", "Stack", "Traffic", "running_stack", "serve"]

MONITORING = REPO_ROOT / "manifests" / "monitoring"
ZONES = ("cluster.local.",)
SVC = "svc.cluster.local."
# What a load generator asks for: names of our zone, a forwarded name (cached after the first
# query) and an NXDOMAIN, as "name type".
LOAD_MIX = (f"web.default.{SVC} A", f"_http._tcp.web.default.{SVC} SRV", "www.up.test. A",
            f"missing.default.{SVC} A")


@dataclass
class Stack:
    etcd: EtcdServer
    prefix: str
    kube: FakeKubeAPI
    good: DnsUpstream
    servfail: DnsUpstream
    dead: DnsUpstream
    sky: SkyserveProcess
    bridge: BridgeProcess
    prometheus: PrometheusProcess


@contextlib.contextmanager
def running_stack(etcd: EtcdServer, prefix: str, work: Path) -> Iterator[Stack]:
    """Start everything (etcd is the caller's); stop what was started, by PID, on exit."""
    with contextlib.ExitStack() as cleanup:
        kube = cleanup.enter_context(FakeKubeAPI(bookmark_interval=0.3, max_watch_seconds=5.0))
        kube.upsert("services", service("default", "web", ["10.96.0.10"],
                                         ports=[{"name": "http", "port": 80}]))
        kube.upsert("endpointslices", endpoint_slice(
            "default", "web-1", "web", endpoints=["10.1.0.1", "10.1.0.2"],
            ports=[{"name": "http", "port": 80}]))
        good = cleanup.enter_context(DnsUpstream())
        good.add("www.up.test.", "A", "192.0.2.1")
        servfail = cleanup.enter_context(DnsUpstream(mode="servfail"))
        dead = cleanup.enter_context(DnsUpstream(mode="drop"))
        sky = SkyserveProcess(etcd.endpoint, ZONES, prefix=prefix, log_dir=work, extra_args=[
            "--upstream", good.address, "--upstream", servfail.address,
            "--stub", f"fail.test.={servfail.address}", "--stub", f"down.test.={dead.address}",
            "--forward-timeout", "0.2s", "--health-check", "0.2s", "--policy", "sequential",
        ])
        cleanup.callback(sky.stop)
        sky.start()
        sky.wait_ready()
        kubeconfig = write_kubeconfig(work / "kubeconfig", kube.url)
        bridge = BridgeProcess(kubeconfig, etcd.endpoint, prefix, work,
                               ["--leader-elect", "--leader-lease-ttl", "2s"])
        cleanup.callback(bridge.stop)
        bridge.start().wait_ready()
        prometheus = PrometheusProcess(
            {"skyserve": [f"127.0.0.1:{sky.metrics_port}"],
             "kube2etcd": [f"127.0.0.1:{bridge.metrics_port}"]},
            [MONITORING / "rules.yaml"], work / "prometheus")
        cleanup.callback(prometheus.stop)
        prometheus.start()
        yield Stack(etcd, prefix, kube, good, servfail, dead, sky, bridge, prometheus)


class Traffic:
    """Rounds of queries and Kubernetes changes that give every dashboard panel data."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.round = 0

    def step(self) -> None:
        sky, n = self.stack.sky, self.round
        self.round += 1
        for name, rdtype, tcp in (
            ("web.default." + SVC, "A", False),          # our zone, NOERROR
            ("web.default." + SVC, "A", True),           # over TCP
            ("_http._tcp.web.default." + SVC, "SRV", False),
            (f"nothing-{n}.default.{SVC}", "A", False),   # NXDOMAIN
            ("www.up.test.", "A", False),                # forwarded, then cache hits
            (f"new-{n}.up.test.", "AAAA", False),        # forwarded, a cache miss
            (f"x{n}.fail.test.", "A", False),            # the only upstream: SERVFAIL
        ):
            sky.query(name, rdtype, tcp)
        sky.query("www.up.test.", "A", want_dnssec=True)  # the DO bit
        with contextlib.suppress(dns.exception.Timeout):  # the dead upstream: health checks
            sky.query(f"x{n}.down.test.", "A", timeout=1.0)
        # A Kubernetes change: the bridge writes it, skyserve applies it.
        self.stack.kube.upsert("endpointslices", endpoint_slice(
            "default", "web-1", "web", endpoints=["10.1.0.1", f"10.1.1.{n % 250 + 1}"],
            ports=[{"name": "http", "port": 80}]))

    def invalid_record(self) -> None:
        """A value skyserve must skip (and count) under its prefix."""
        self.stack.etcd.put(f"{self.stack.prefix}/local/cluster/bad", "{not json")

    def bridge_watch_restart(self) -> None:
        """Cut the API server's connections once: the bridge restarts its watches."""
        self.stack.kube.set_down(True)
        self.stack.kube.set_down(False)


def serve(max_seconds: float) -> None:
    """Run the stack for another program: one JSON line on stdout with skyserve's DNS port,
    Prometheus's port and LOAD_MIX, then a round of Traffic a second (a watch cut a minute)
    until stdin closes, SIGTERM arrives or `max_seconds` pass; then stop everything."""
    signal.signal(signal.SIGTERM, _exit_on_signal)
    with tempfile.TemporaryDirectory(prefix="monitoring-stack-") as tmp:
        for etcd in started(EtcdServer("monitoring")):
            with running_stack(etcd, "/skydns", Path(tmp)) as stack:
                print(json.dumps({"dns_port": stack.sky.dns_port,
                                  "prometheus_port": stack.prometheus.port,
                                  "queries": list(LOAD_MIX)}), flush=True)
                traffic = Traffic(stack)
                traffic.invalid_record()
                deadline = time.monotonic() + max_seconds
                while time.monotonic() < deadline and not _stdin_closed(within=1.0):
                    traffic.step()
                    if traffic.round % 60 == 30:
                        traffic.bridge_watch_restart()


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds the context managers, which stop the processes


def _stdin_closed(within: float) -> bool:
    """Whether stdin reached EOF (the parent went away or is done) within `within` seconds."""
    fd = sys.stdin.fileno()
    readable, _, _ = select.select([fd], [], [], within)
    return bool(readable) and os.read(fd, 4096) == b""


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="The monitoring stack, for a program.")
    parser.add_argument("--max-seconds", type=float, default=3600.0,
                        help="stop after this long even if stdin stays open")
    serve(parser.parse_args().max_seconds)
