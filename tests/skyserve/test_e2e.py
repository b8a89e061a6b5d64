"""skyserve end to end: a real etcd, the real server process, real DNS clients."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable

import dns.flags
import dns.message
import dns.rcode
import pytest

from tests.support.dnsutil import addresses, key
from tests.support.etcd_server import EtcdServer
from tests.support.netutil import free_port, http_get
from tests.support.polling import wait_for
from tests.support.skyserve_proc import SkyserveProcess

pytestmark = pytest.mark.e2e

Start = Callable[..., SkyserveProcess]
ZONES = ("skydns.test.", "example.org.", "10.in-addr.arpa.")


def test_answers_over_udp_and_tcp(etcd: EtcdServer, clean_prefix: str, skyserve: Start) -> None:
    etcd.put(key(clean_prefix, "x1.web.skydns.test"), '{"host":"10.0.0.1"}')
    etcd.put(key(clean_prefix, "x2.web.skydns.test"), '{"host":"10.0.0.2"}')
    etcd.put(key(clean_prefix, "www.example.org"), '{"host":"2001:db8::1","ttl":42}')
    proc = skyserve(ZONES)
    for tcp in (False, True):
        reply = proc.query("web.skydns.test", "A", tcp=tcp)
        assert reply.rcode() == dns.rcode.NOERROR and reply.flags & dns.flags.AA
        assert addresses(reply) == ["10.0.0.1", "10.0.0.2"]
        reply = proc.query("www.example.org", "AAAA", tcp=tcp)
        assert addresses(reply) == ["2001:db8::1"] and reply.answer[0].ttl == 42
        reply = proc.query("nothing.skydns.test", "A", tcp=tcp)
        assert reply.rcode() == dns.rcode.NXDOMAIN
        assert reply.authority[0].rdtype == 6 and reply.authority[0].ttl == 30
        assert proc.query("example.com", "A", tcp=tcp).rcode() == dns.rcode.REFUSED


def test_updates_and_deletes_seen_at_once(
    etcd: EtcdServer, clean_prefix: str, skyserve: Start
) -> None:
    proc = skyserve(ZONES)
    name = "svc.skydns.test"
    assert proc.query(name).rcode() == dns.rcode.NXDOMAIN
    etcd.put(key(clean_prefix, "a." + name), '{"host":"10.1.0.1"}')
    assert wait_for(lambda: addresses(proc.query(name)) == ["10.1.0.1"], 2)
    etcd.put(key(clean_prefix, "a." + name), '{"host":"10.1.0.2"}')
    assert wait_for(lambda: addresses(proc.query(name)) == ["10.1.0.2"], 2)
    etcd.delete(key(clean_prefix, "a." + name))
    assert wait_for(lambda: proc.query(name).rcode() == dns.rcode.NXDOMAIN, 2)


def test_soa_serial_is_the_etcd_revision(
    etcd: EtcdServer, clean_prefix: str, skyserve: Start
) -> None:
    proc = skyserve(ZONES)
    revision = etcd.put(key(clean_prefix, "r.skydns.test"), '{"host":"10.2.0.1"}')
    assert wait_for(lambda: proc.query("r.skydns.test").rcode() == dns.rcode.NOERROR)
    soa = proc.query("skydns.test", "SOA").answer[0][0]
    assert soa.serial == revision
    assert soa.mname.to_text() == "ns.dns.skydns.test."


def test_malformed_values_are_skipped(etcd: EtcdServer, clean_prefix: str, skyserve: Start) -> None:
    etcd.put(key(clean_prefix, "good.m.skydns.test"), '{"host":"10.3.0.1"}')
    etcd.put(key(clean_prefix, "bad.m.skydns.test"), '{"host":"10.3.0.2","port":"80"}')
    etcd.put(key(clean_prefix, "junk.m.skydns.test"), "{not json")
    proc = skyserve(ZONES)
    assert addresses(proc.query("m.skydns.test")) == ["10.3.0.1"]
    assert proc.query("bad.m.skydns.test").rcode() == dns.rcode.NXDOMAIN
    etcd.put(key(clean_prefix, "late.m.skydns.test"), '{"ttl":"x"}')
    etcd.put(key(clean_prefix, "fixed.m.skydns.test"), '{"host":"10.3.0.3"}')
    assert wait_for(lambda: addresses(proc.query("m.skydns.test")) == ["10.3.0.1", "10.3.0.3"])
    assert "field 'port' must be an integer" in proc.log_text()


def test_truncation_and_tcp(etcd: EtcdServer, clean_prefix: str, skyserve: Start) -> None:
    for i in range(120):
        value = f'{{"host":"10.4.{i // 250}.{i % 250}"}}'
        etcd.put(key(clean_prefix, f"h{i}.big.skydns.test"), value)
    proc = skyserve(ZONES)
    udp = proc.query("big.skydns.test", "A")
    assert udp.flags & dns.flags.TC and len(udp.to_wire()) <= 512 and udp.edns < 0
    edns = proc.query("big.skydns.test", "A", use_edns=0, payload=4096)
    assert edns.flags & dns.flags.TC and len(edns.to_wire()) <= 1232 and edns.payload == 1232
    tcp = proc.query("big.skydns.test", "A", tcp=True)
    assert not tcp.flags & dns.flags.TC and len(addresses(tcp)) == 120


@pytest.mark.skipif(shutil.which("dig") is None, reason="dig is not installed")
def test_dig_sees_the_same(etcd: EtcdServer, clean_prefix: str, skyserve: Start) -> None:
    etcd.put(key(clean_prefix, "dig.skydns.test"), '{"host":"10.5.0.1"}')
    etcd.put(key(clean_prefix, "1.0.5.10.in-addr.arpa"), '{"host":"dig.skydns.test"}')
    proc = skyserve(ZONES)
    dig = ["dig", "@127.0.0.1", "-p", str(proc.dns_port), "+short", "+tries=1", "+time=2"]
    assert subprocess.run([*dig, "dig.skydns.test"], capture_output=True, text=True,
                          timeout=10).stdout.split() == ["10.5.0.1"]
    assert subprocess.run([*dig, "-x", "10.5.0.1"], capture_output=True, text=True,
                          timeout=10).stdout.split() == ["dig.skydns.test."]
    assert subprocess.run([*dig, "+tcp", "dig.skydns.test"], capture_output=True, text=True,
                          timeout=10).stdout.split() == ["10.5.0.1"]


def test_servfail_before_first_load(clean_prefix: str, skyserve: Start, etcd_binary: str) -> None:
    port = free_port()
    proc = skyserve(ZONES, ["--etcd-timeout", "1"], etcd_endpoints=f"http://127.0.0.1:{port}",
                    wait=False)
    assert wait_for(proc.is_healthy, 10)
    reply = proc.query("anything.skydns.test")
    assert reply.rcode() == dns.rcode.SERVFAIL
    status, body = http_get(proc.ready_port, "/ready")
    assert status == 503 and "etcd" in body
    assert proc.query("example.com").rcode() == dns.rcode.REFUSED
    # The log says what is true: there is no "last data" to serve yet.
    said = "(nothing loaded yet: answering SERVFAIL for our zones; retrying)"
    assert wait_for(lambda: said in proc.log_text(), 5), proc.log_tail()
    assert "serving the last data loaded" not in proc.log_text()
    late = EtcdServer("late", binary=etcd_binary, client_port=port)
    try:
        late.start()
        late.put(key(clean_prefix, "anything.skydns.test"), '{"host":"10.6.0.1"}')
        proc.wait_ready(20)
        # The put may land just before or just after the first load; either way it answers.
        assert wait_for(lambda: addresses(proc.query("anything.skydns.test")) == ["10.6.0.1"])
    finally:
        late.cleanup()


def test_etcd_restart_under_a_running_server(fresh_etcd: EtcdServer, clean_prefix: str,
                                             skyserve: Start) -> None:
    fresh_etcd.put(key(clean_prefix, "a.rs.skydns.test"), '{"host":"10.7.0.1"}')
    proc = skyserve(ZONES, etcd_endpoints=fresh_etcd.endpoint)
    fresh_etcd.stop()
    for _ in range(20):
        assert addresses(proc.query("rs.skydns.test")) == ["10.7.0.1"]
        time.sleep(0.05)
    assert proc.is_ready()
    said = "(serving the last data loaded; retrying)"
    assert wait_for(lambda: said in proc.log_text(), 10), proc.log_tail()
    fresh_etcd.start()
    fresh_etcd.put(key(clean_prefix, "b.rs.skydns.test"), '{"host":"10.7.0.2"}')
    assert wait_for(lambda: addresses(proc.query("rs.skydns.test")) == ["10.7.0.1", "10.7.0.2"], 15)


def test_frozen_etcd_is_detected_and_recovered(fresh_etcd: EtcdServer, clean_prefix: str,
                                               skyserve: Start) -> None:
    proc = skyserve(ZONES, ["--etcd-probe-interval", "0.3", "--etcd-timeout", "0.5"],
                    etcd_endpoints=fresh_etcd.endpoint)
    fresh_etcd.put(key(clean_prefix, "a.fz.skydns.test"), '{"host":"10.8.0.1"}')
    assert wait_for(lambda: addresses(proc.query("fz.skydns.test")) == ["10.8.0.1"])
    fresh_etcd.pause()
    try:
        time.sleep(2)
        assert addresses(proc.query("fz.skydns.test")) == ["10.8.0.1"]
    finally:
        fresh_etcd.resume()
    fresh_etcd.put(key(clean_prefix, "b.fz.skydns.test"), '{"host":"10.8.0.2"}')
    assert wait_for(lambda: addresses(proc.query("fz.skydns.test")) == ["10.8.0.1", "10.8.0.2"], 15)
    assert "etcd unavailable" in proc.log_text()


def test_a_quiet_watch_is_left_alone(etcd: EtcdServer, clean_prefix: str, skyserve: Start) -> None:
    """The silent-watch probe must not mistake an idle but healthy watch for a dead one."""
    for i in range(20):
        etcd.put(key(clean_prefix, f"h{i}.quiet.skydns.test"), '{"host":"10.10.0.1"}')
    proc = skyserve(ZONES, ["--etcd-probe-interval", "0.1"])
    time.sleep(1.5)
    assert "etcd unavailable" not in proc.log_text()
    etcd.put(key(clean_prefix, "late.quiet.skydns.test"), '{"host":"10.10.0.2"}')
    assert wait_for(lambda: "10.10.0.2" in addresses(proc.query("quiet.skydns.test")))


def test_compacted_revision_reloads_without_gap(fresh_etcd: EtcdServer, clean_prefix: str,
                                                skyserve: Start) -> None:
    """The server misses events that are then compacted away; it must reload in full."""
    fresh_etcd.put(key(clean_prefix, "keep.cp.skydns.test"), '{"host":"10.9.0.1"}')
    fresh_etcd.put(key(clean_prefix, "gone.cp.skydns.test"), '{"host":"10.9.0.2"}')
    proc = skyserve(ZONES, ["--etcd-probe-interval", "0.3"], etcd_endpoints=fresh_etcd.endpoint)
    assert addresses(proc.query("cp.skydns.test")) == ["10.9.0.1", "10.9.0.2"]
    assert proc.pid is not None
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        fresh_etcd.restart()  # breaks the watch stream while the server cannot see it
        fresh_etcd.delete(key(clean_prefix, "gone.cp.skydns.test"))
        fresh_etcd.put(key(clean_prefix, "new.cp.skydns.test"), '{"host":"10.9.0.3"}')
        fresh_etcd.compact(fresh_etcd.revision())
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    assert wait_for(lambda: addresses(proc.query("cp.skydns.test")) == ["10.9.0.1", "10.9.0.3"], 15)
    assert "reloading the whole prefix" in proc.log_text()
    # Never a gap: the surviving record answers throughout.
    for _ in range(10):
        assert "10.9.0.1" in addresses(proc.query("cp.skydns.test"))


def test_health_and_ready(skyserve: Start) -> None:
    proc = skyserve(ZONES)
    assert http_get(proc.health_port, "/health") == (200, "OK")
    assert http_get(proc.ready_port, "/ready")[0] == 200
    assert http_get(proc.ready_port, "/nope")[0] == 404


def test_sigterm_exits_cleanly(skyserve: Start) -> None:
    proc = skyserve(ZONES)
    assert proc.stop() == 0
