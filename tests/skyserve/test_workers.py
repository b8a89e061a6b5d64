"""--workers: several processes on one DNS port, one set of probes and exact metrics."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import dns.rcode
import pytest

from tests.support.dnsutil import addresses, key
from tests.support.etcd_server import EtcdServer
from tests.support.netutil import http_get, metric_families
from tests.support.polling import wait_for
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


def loads(proc: SkyserveProcess) -> int:
    """Full reads of the etcd prefix so far, by the supervisor and the workers together."""
    return proc.log_text().count("etcd: loaded ")


def everyone_answers(proc: SkyserveProcess, name: str, want: list[str]) -> bool:
    """Each query comes from a new socket, so SO_REUSEPORT spreads 30 of them over the
    workers: all of them answer (a worker missing a change would turn up)."""
    return all(addresses(proc.query(name)) == want for _ in range(30))


def test_workers_share_one_load_and_each_follows_the_changes(
    etcd: EtcdServer, clean_prefix: str, skyserve: Start
) -> None:
    etcd.put(key(clean_prefix, "before.skydns.test"), '{"host":"10.20.1.1"}')
    proc = skyserve(["skydns.test."], ["--workers", "2"])
    assert loads(proc) == 1  # the supervisor's, before it forked the workers
    assert everyone_answers(proc, "before.skydns.test", ["10.20.1.1"])
    etcd.put(key(clean_prefix, "after.skydns.test"), '{"host":"10.20.1.2"}')
    etcd.put(key(clean_prefix, "before.skydns.test"), '{"host":"10.20.1.3"}')
    assert wait_for(lambda: everyone_answers(proc, "after.skydns.test", ["10.20.1.2"]))
    assert wait_for(lambda: everyone_answers(proc, "before.skydns.test", ["10.20.1.3"]))
    assert loads(proc) == 1  # the changes came through each worker's watch


def test_workers_load_for_themselves_when_etcd_comes_late(
    fresh_etcd: EtcdServer, clean_prefix: str, skyserve: Start
) -> None:
    fresh_etcd.put(key(clean_prefix, "late.skydns.test"), '{"host":"10.20.2.1"}')
    fresh_etcd.stop()
    proc = skyserve(["skydns.test."], ["--workers", "2"], etcd_endpoints=fresh_etcd.endpoint,
                    wait=False)
    assert wait_for(lambda: "each worker loads the records itself" in proc.log_text(), 15)
    fresh_etcd.start()
    proc.wait_ready(30)
    assert everyone_answers(proc, "late.skydns.test", ["10.20.2.1"])


def replace_a_worker(proc: SkyserveProcess) -> None:
    """Kill one of two workers; wait until its replacement is there and ready."""
    pid = proc.pid
    assert pid is not None
    victim = children(pid)[0]
    os.kill(victim, signal.SIGKILL)
    assert wait_for(lambda: victim not in children(pid) and len(children(pid)) == 2
                    and http_get(proc.ready_port, "/ready")[0] == 200, 15), \
        "the killed worker was not replaced"


def test_a_dead_worker_is_replaced(etcd: EtcdServer, clean_prefix: str, skyserve: Start) -> None:
    etcd.put(f"{clean_prefix}/test/skydns/w", '{"host":"10.20.0.2"}')
    proc = skyserve(["skydns.test."], ["--workers", "2"])
    replace_a_worker(proc)
    for _ in range(10):
        assert proc.query("w.skydns.test").rcode() == dns.rcode.NOERROR
    assert loads(proc) == 2  # the replacement read etcd itself
    etcd.put(f"{clean_prefix}/test/skydns/w", '{"host":"10.20.0.3"}')
    assert wait_for(lambda: everyone_answers(proc, "w.skydns.test", ["10.20.0.3"]))
    assert proc.stop() == 0




def test_a_replacement_serves_the_config_file_as_it_is_now(
    etcd: EtcdServer, clean_prefix: str, skyserve: Start, tmp_path: Path
) -> None:
    config = tmp_path / "skyserve.toml"
    config.write_text("default-ttl = 300\n")
    etcd.put(key(clean_prefix, "ttl.skydns.test"), '{"host":"10.20.4.1"}')
    proc = skyserve(["skydns.test."], ["--workers", "2", "--config", str(config),
                                       "--reload-interval", "0"])
    config.write_text("default-ttl = 42\n")  # no SIGHUP: only a new worker reads it
    replace_a_worker(proc)
    ttls = {proc.query("ttl.skydns.test").answer[0].ttl for _ in range(30)}
    assert min(ttls) <= 42 < max(ttls), ttls  # the replacement's, and its sibling's


def test_a_worker_whose_watch_was_compacted_reloads(
    fresh_etcd: EtcdServer, clean_prefix: str, skyserve: Start
) -> None:
    fresh_etcd.put(key(clean_prefix, "keep.cw.skydns.test"), '{"host":"10.20.3.1"}')
    fresh_etcd.put(key(clean_prefix, "gone.cw.skydns.test"), '{"host":"10.20.3.2"}')
    proc = skyserve(["skydns.test."], ["--workers", "2", "--etcd-probe-interval", "0.3"],
                    etcd_endpoints=fresh_etcd.endpoint)
    assert proc.pid is not None
    frozen = [proc.pid, *children(proc.pid)]
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)
    try:
        fresh_etcd.restart()  # breaks every watch while the workers cannot see it
        fresh_etcd.delete(key(clean_prefix, "gone.cw.skydns.test"))
        fresh_etcd.put(key(clean_prefix, "new.cw.skydns.test"), '{"host":"10.20.3.3"}')
        fresh_etcd.compact(fresh_etcd.revision())
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
    assert wait_for(lambda: everyone_answers(proc, "cw.skydns.test", ["10.20.3.1", "10.20.3.3"]),
                    15)
    assert proc.log_text().count("reloading the whole prefix") == 2
