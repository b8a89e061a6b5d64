"""--workers: several processes on one DNS port, one set of probes and exact metrics."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import dns.rcode
import pytest

from tests.support.etcd_server import EtcdServer
from tests.support.netutil import http_get, metric_families
from tests.support.skyserve_proc import SkyserveProcess

pytestmark = pytest.mark.e2e

Start = Callable[..., SkyserveProcess]


def children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def requests_for(proc: SkyserveProcess, zone: str) -> float:
    total = 0.0
    for family in metric_families(proc.metrics_port):
        if family.name == "coredns_dns_requests":
            total += sum(s.value for s in family.samples
                         if s.name.endswith("_total") and s.labels["zone"] == zone)
    return total


def test_workers_share_the_port_and_sum_their_metrics(
    etcd: EtcdServer, clean_prefix: str, skyserve: Start
) -> None:
    etcd.put(f"{clean_prefix}/test/skydns/w", '{"host":"10.20.0.1"}')
    proc = skyserve(["skydns.test."], ["--workers", "2"])
    assert proc.pid is not None
    workers = children(proc.pid)
    assert len(workers) == 2
    for i in range(40):
        reply = proc.query("w.skydns.test", tcp=i % 4 == 0)
        assert reply.rcode() == dns.rcode.NOERROR
    assert requests_for(proc, "skydns.test.") == 40


def test_a_dead_worker_is_replaced(etcd: EtcdServer, clean_prefix: str, skyserve: Start) -> None:
    etcd.put(f"{clean_prefix}/test/skydns/w", '{"host":"10.20.0.2"}')
    proc = skyserve(["skydns.test."], ["--workers", "2"])
    assert proc.pid is not None
    victim = children(proc.pid)[0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        now = children(proc.pid)
        if len(now) == 2 and victim not in now and http_get(proc.ready_port, "/ready")[0] == 200:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the killed worker was not replaced")
    for _ in range(10):
        assert proc.query("w.skydns.test").rcode() == dns.rcode.NOERROR
    assert proc.stop() == 0
