"""Forwarding end to end: the real skyserve process in front of scriptable loopback upstreams.

Every upstream is a ``DnsUpstream`` on 127.0.0.x; skyserve never reads /etc/resolv.conf
(the harness passes ``--resolv-conf ''`` unless a test names its own file).
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from skyserve.app import App
from tests.support.dns_upstream import SPOOFED, DnsUpstream
from tests.support.dnsutil import key
from tests.support.etcd_server import EtcdServer
from tests.support.netutil import free_loopback_53, free_port
from tests.support.polling import wait_for
from tests.support.skyserve_proc import SkyserveProcess

Start = Callable[..., SkyserveProcess]
Upstreams = Callable[..., DnsUpstream]
ZONES = ("skydns.test.",)
FAST = ("--forward-timeout", "0.3", "--health-check", "0.1")


def texts(reply: dns.message.Message, rdtype: str = "A") -> list[str]:
    want = dns.rdatatype.from_text(rdtype)
    return sorted(rd.to_text() for rrset in reply.answer if rrset.rdtype == want for rd in rrset)


def upstream_args(*ups: DnsUpstream) -> list[str]:
    return [a for u in ups for a in ("--upstream", u.address)]


def timed(proc: SkyserveProcess, name: str, rdtype: str = "A", **kw: object
          ) -> tuple[dns.message.Message, float]:
    t0 = time.monotonic()
    reply = proc.query(name, rdtype, **kw)  # type: ignore[arg-type]
    return reply, time.monotonic() - t0


def names(n: int, domain: str = "example.com") -> list[str]:
    return [f"n{i}.{domain}." for i in range(n)]


def serve_names(up: DnsUpstream, hosts: list[str], address: str = "192.0.2.1") -> None:
    for host in hosts:
        up.add(host, "A", address)


# -- plain forwarding ----------------------------------------------------------------


@pytest.mark.e2e
def test_forwards_names_outside_our_zones(skyserve: Start, dns_upstream: Upstreams) -> None:
    up = dns_upstream()
    up.add("www.example.com", "A", "192.0.2.1", "192.0.2.2", ttl=120)
    up.add("www.example.com", "AAAA", "2001:db8::1")
    up.add("example.com", "MX", "10 mail.example.com.")
    up.add("example.com", "TXT", '"v=spf1 -all"')
    up.soa_ttl, up.soa_minimum = 45, 40
    proc = skyserve(ZONES, [*FAST, *upstream_args(up)])

    reply = proc.query("www.example.com", "A")
    assert reply.rcode() == dns.rcode.NOERROR and reply.flags & dns.flags.RA
    assert texts(reply) == ["192.0.2.1", "192.0.2.2"] and reply.answer[0].ttl == 120
    assert texts(proc.query("www.example.com", "AAAA"), "AAAA") == ["2001:db8::1"]
    assert texts(proc.query("example.com", "MX"), "MX") == ["10 mail.example.com."]
    assert texts(proc.query("example.com", "TXT"), "TXT") == ['"v=spf1 -all"']
    nx = proc.query("nothing.example.com", "A")
    assert nx.rcode() == dns.rcode.NXDOMAIN and not nx.answer
    soa = nx.authority[0]
    assert soa.rdtype == dns.rdatatype.SOA and soa[0].minimum == 40 and soa.ttl <= 45
    nodata = proc.query("www.example.com", "MX")
    assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer and nodata.authority
    for name, rdtype in (("www.example.com", "A"), ("www.example.com", "AAAA"),
                         ("example.com", "MX"), ("example.com", "TXT"),
                         ("nothing.example.com", "A")):
        assert up.count(name, rdtype) == 1, (name, rdtype)
    # Every upstream query speaks EDNS (RFC 6891) and keeps RD.
    assert all(s.edns == 0 and s.rd for s in up.queries("www.example.com"))


@pytest.mark.e2e
def test_names_in_our_zones_are_never_forwarded(
    etcd: EtcdServer, clean_prefix: str, skyserve: Start, dns_upstream: Upstreams
) -> None:
    up = dns_upstream()
    for name in ("a.skydns.test", "missing.skydns.test", "skydns.test"):
        up.add(name, "A", SPOOFED)
    etcd.put(key(clean_prefix, "a.skydns.test"), '{"host":"10.0.0.1"}')
    # Even a stub for a parent domain must not pull our zone's names upstream.
    proc = skyserve(ZONES, [*FAST, *upstream_args(up), "--stub", f"test.={up.address}"])
    for tcp in (False, True):
        assert texts(proc.query("a.skydns.test", tcp=tcp)) == ["10.0.0.1"]
        assert proc.query("missing.skydns.test", tcp=tcp).rcode() == dns.rcode.NXDOMAIN
        assert proc.query("deep.missing.skydns.test", "AAAA", tcp=tcp).rcode() == \
            dns.rcode.NXDOMAIN
        assert proc.query("a.skydns.test", "MX", tcp=tcp).rcode() == dns.rcode.NOERROR
        assert proc.query("skydns.test", "SOA", tcp=tcp).rcode() == dns.rcode.NOERROR
    time.sleep(0.2)
    leaked = [s for s in up.queries() if s.name.lower().endswith("skydns.test.")]
    assert leaked == []


# -- failover and policies -----------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.parametrize("policy", ["random", "round_robin", "sequential"])
@pytest.mark.parametrize("failure", ["drop", "servfail", "refused"])
def test_failover_to_the_next_upstream(
    skyserve: Start, dns_upstream: Upstreams, policy: str, failure: str
) -> None:
    bad = dns_upstream(mode=failure)
    good = dns_upstream()
    hosts = names(12)
    serve_names(good, hosts)
    serve_names(bad, hosts, SPOOFED)
    proc = skyserve(ZONES, [*FAST, "--policy", policy, *upstream_args(bad, good)])
    for host in hosts:
        reply, took = timed(proc, host)
        assert reply.rcode() == dns.rcode.NOERROR, host
        assert texts(reply) == ["192.0.2.1"]
        assert took < 1.0
    assert sum(bad.count(h) for h in hosts) >= 1, "the failing upstream was never tried"
    assert all(good.count(h) == 1 for h in hosts)


@pytest.mark.e2e
def test_sequential_always_tries_the_first_first(skyserve: Start,
                                                 dns_upstream: Upstreams) -> None:
    first, second = dns_upstream(), dns_upstream()
    hosts = names(8)
    serve_names(first, hosts)
    serve_names(second, hosts)
    proc = skyserve(ZONES, [*FAST, "--policy", "sequential", *upstream_args(first, second)])
    for host in hosts:
        assert proc.query(host).rcode() == dns.rcode.NOERROR
    assert [first.count(h) for h in hosts] == [1] * 8
    assert [second.count(h) for h in hosts] == [0] * 8


@pytest.mark.e2e
@pytest.mark.parametrize("policy", ["round_robin", "random"])
def test_policies_spread_queries(skyserve: Start, dns_upstream: Upstreams, policy: str) -> None:
    ups = [dns_upstream(), dns_upstream()]
    hosts = names(20)
    for up in ups:
        serve_names(up, hosts)
    proc = skyserve(ZONES, [*FAST, "--policy", policy, *upstream_args(*ups)])
    for host in hosts:
        assert proc.query(host).rcode() == dns.rcode.NOERROR
    shares = [sum(up.count(h) for h in hosts) for up in ups]
    assert sum(shares) == 20
    if policy == "round_robin":
        assert shares == [10, 10]
    else:
        assert min(shares) >= 2, shares


@pytest.mark.e2e
def test_servfail_only_when_every_upstream_failed(skyserve: Start,
                                                 dns_upstream: Upstreams) -> None:
    ups = [dns_upstream(mode="servfail"), dns_upstream(mode="drop"),
           dns_upstream(mode="refused")]
    proc = skyserve(ZONES, [*FAST, "--policy", "sequential", *upstream_args(*ups)])
    for i, tcp in enumerate((False, True)):
        name = f"fail{i}.example.com"
        reply, took = timed(proc, name, tcp=tcp, timeout=3.0)
        assert reply.rcode() == dns.rcode.SERVFAIL
        assert took < 0.3 * 3 + 0.6, f"{took:.2f}s"
        assert [u.count(name, transport="tcp" if tcp else "udp") for u in ups] == [1, 1, 1]
    # RFC 8914: to an EDNS client, why: no upstream answered usefully in time.
    reply = proc.query("fail-edns.example.com", use_edns=0, timeout=3.0)
    assert reply.rcode() == dns.rcode.SERVFAIL
    assert [o.code for o in reply.options] == [22]  # type: ignore[attr-defined]


@pytest.mark.e2e
def test_network_errors_are_told_apart(skyserve: Start) -> None:
    """A TCP upstream that refuses the connection: EDE 23 Network Error (RFC 8914)."""
    closed = free_port()
    proc = skyserve(ZONES, [*FAST, "--upstream", f"127.0.0.1:{closed}"])
    reply = proc.query("www.example.com", use_edns=0, tcp=True, timeout=3.0)
    assert reply.rcode() == dns.rcode.SERVFAIL
    assert [o.code for o in reply.options] == [23]  # type: ignore[attr-defined]


@pytest.mark.e2e
def test_never_silence_when_every_upstream_is_dead(skyserve: Start,
                                                  dns_upstream: Upstreams) -> None:
    ups = [dns_upstream(mode="drop") for _ in range(3)]
    proc = skyserve(ZONES, [*FAST, *upstream_args(*ups)])
    for i in range(3):  # the third finds them all marked unhealthy
        reply, took = timed(proc, f"dead{i}.example.com", timeout=3.0)
        assert reply.rcode() == dns.rcode.SERVFAIL
        assert took < 0.3 * 3 + 0.6, f"{took:.2f}s"


@pytest.mark.e2e
def test_forward_timeout_is_the_read_timeout(skyserve: Start, dns_upstream: Upstreams) -> None:
    slow = dns_upstream(delay=0.6)
    slow.add("slow.example.com", "A", "192.0.2.1")
    impatient = skyserve(ZONES, ["--forward-timeout", "0.3", "--upstream", slow.address])
    patient = skyserve(ZONES, ["--forward-timeout", "1.5", "--upstream", slow.address])
    reply, took = timed(impatient, "slow.example.com", timeout=3)
    assert reply.rcode() == dns.rcode.SERVFAIL and 0.25 <= took < 0.55, f"{took:.2f}s"
    reply, took = timed(patient, "slow.example.com", timeout=3)
    assert texts(reply) == ["192.0.2.1"] and 0.55 <= took < 1.2, f"{took:.2f}s"


# -- health checks -------------------------------------------------------------------


@pytest.mark.e2e
def test_dead_upstream_is_probed_and_used_again_after_recovery(
    skyserve: Start, dns_upstream: Upstreams
) -> None:
    first, second = dns_upstream(mode="drop"), dns_upstream()
    hosts = names(12)
    serve_names(first, hosts)
    serve_names(second, hosts)
    proc = skyserve(ZONES, [*FAST, "--policy", "sequential", "--max-fails", "2",
                            *upstream_args(first, second)])
    for host in hosts[:3]:
        assert proc.query(host).rcode() == dns.rcode.NOERROR
    # Two timeouts: now unhealthy, skipped, and probed with ". NS".
    reply, took = timed(proc, hosts[3])
    assert reply.rcode() == dns.rcode.NOERROR and took < 0.25
    assert first.count(hosts[3]) == 0
    assert wait_for(lambda: first.probes >= 3, 2)
    assert all(s.rdtype == "NS" for s in first.queries(".")) and first.queries(".")
    assert proc.metric("coredns_proxy_healthcheck_failures_total", to=first.address) >= 1
    first.mode = "ok"
    fresh = (f"r{i}.example.com" for i in itertools.count())

    def first_is_used() -> bool:
        name = next(fresh)
        proc.query(name)  # NXDOMAIN from either upstream; who answered is what counts
        return first.count(name) == 1

    assert wait_for(first_is_used, 3, step=0.05), "the recovered upstream is not used again"


@pytest.mark.e2e
def test_health_probes_use_random_ids(skyserve: Start, dns_upstream: Upstreams) -> None:
    dead, alive = dns_upstream(mode="drop"), dns_upstream()
    serve_names(alive, names(2))
    proc = skyserve(ZONES, [*FAST, "--policy", "sequential", *upstream_args(dead, alive)])
    for host in names(2):
        proc.query(host)
    assert wait_for(lambda: dead.probes >= 4, 3)
    ids = {s.id for s in dead.queries(".")}
    ports = {s.source[1] for s in dead.queries(".")}
    assert len(ids) > 1, f"every health probe used ID {ids}"
    assert len(ports) > 1


# -- limits --------------------------------------------------------------------------


@pytest.mark.e2e
def test_max_concurrent_refuses_extra_queries(skyserve: Start, dns_upstream: Upstreams) -> None:
    slow = dns_upstream(delay=0.8)
    hosts = names(6)
    serve_names(slow, hosts)
    proc = skyserve(ZONES, ["--forward-timeout", "2", "--max-concurrent", "2",
                            *upstream_args(slow)])
    before = proc.metric("coredns_forward_max_concurrent_rejects_total")
    results: dict[str, tuple[int, float]] = {}

    def ask(host: str) -> None:
        reply, took = timed(proc, host, timeout=3.0)
        results[host] = (reply.rcode(), took)

    threads = []
    for host in hosts:
        threads.append(threading.Thread(target=ask, args=(host,)))
        threads[-1].start()
        time.sleep(0.02)
    for t in threads:
        t.join(5)
    rcodes = [results[h][0] for h in hosts]
    assert rcodes[:2] == [dns.rcode.NOERROR] * 2
    assert rcodes[2:] == [dns.rcode.REFUSED] * 4
    assert all(results[h][1] < 0.3 for h in hosts[2:]), results
    assert sum(slow.count(h) for h in hosts) == 2
    after = proc.metric("coredns_forward_max_concurrent_rejects_total")
    assert after - before == 4


# -- truncation and TCP --------------------------------------------------------------


@pytest.mark.e2e
def test_truncated_reply_is_retried_over_tcp(skyserve: Start, dns_upstream: Upstreams) -> None:
    up = dns_upstream(mode="truncate")
    up.add("big.example.com", "A", *(f"192.0.2.{i}" for i in range(1, 6)))
    proc = skyserve(ZONES, [*FAST, *upstream_args(up)])
    reply = proc.query("big.example.com", use_edns=0, payload=1232)
    assert reply.rcode() == dns.rcode.NOERROR and not reply.flags & dns.flags.TC
    assert len(texts(reply)) == 5
    assert up.count("big.example.com", transport="udp") == 1
    assert up.count("big.example.com", transport="tcp") == 1


@pytest.mark.e2e
def test_big_forwarded_answer_is_truncated_for_small_udp_clients(
    skyserve: Start, dns_upstream: Upstreams
) -> None:
    up = dns_upstream()
    up.add("many.example.com", "A", *(f"192.0.2.{i}" for i in range(1, 51)))
    proc = skyserve(ZONES, [*FAST, "--upstream", up.address])
    small = proc.query("many.example.com")  # no EDNS: 512 bytes at most
    assert small.flags & dns.flags.TC and len(small.to_wire()) <= 512 and small.edns < 0
    assert len(texts(proc.query("many.example.com", tcp=True))) == 50
    assert len(texts(proc.query("many.example.com", use_edns=0, payload=4096))) == 50


@pytest.mark.e2e
def test_tcp_clients_are_forwarded_over_tcp(skyserve: Start, dns_upstream: Upstreams) -> None:
    up = dns_upstream()
    up.add("www.example.com", "A", "192.0.2.1")
    proc = skyserve(ZONES, [*FAST, *upstream_args(up)])
    assert texts(proc.query("www.example.com", tcp=True)) == ["192.0.2.1"]
    assert up.count("www.example.com", transport="tcp") == 1
    assert up.count("www.example.com", transport="udp") == 0


# -- protection against forged replies -----------------------------------------------


@pytest.mark.e2e
@pytest.mark.parametrize("also_answer", [False, True], ids=["forged-only", "then-genuine"])
@pytest.mark.parametrize("mode", ["wrong_id", "wrong_question", "from_other_port"])
def test_forged_replies_are_ignored(skyserve: Start, dns_upstream: Upstreams, mode: str,
                                    also_answer: bool) -> None:
    up = dns_upstream(mode=mode)
    up.also_answer = also_answer
    up.add("www.example.com", "A", "192.0.2.1")
    proc = skyserve(ZONES, [*FAST, *upstream_args(up)])
    reply, took = timed(proc, "www.example.com", timeout=3.0)
    assert SPOOFED not in texts(reply)
    if also_answer:
        assert reply.rcode() == dns.rcode.NOERROR and texts(reply) == ["192.0.2.1"]
    else:
        assert reply.rcode() == dns.rcode.SERVFAIL and took < 1.0


@pytest.mark.e2e
def test_upstream_query_ids_and_ports_vary(skyserve: Start, dns_upstream: Upstreams) -> None:
    up = dns_upstream()
    hosts = names(24)
    serve_names(up, hosts)
    proc = skyserve(ZONES, [*FAST, *upstream_args(up)])
    for host in hosts:
        q = dns.message.make_query(host, "A")
        q.id = 4242  # the same client ID every time
        reply = dns.query.udp(q, "127.0.0.1", port=proc.dns_port, timeout=2)
        assert reply.id == 4242 and reply.rcode() == dns.rcode.NOERROR
    seen = [s for h in hosts for s in up.queries(h)]
    assert len(seen) == 24
    assert len({s.id for s in seen}) >= 20, "upstream IDs do not look random"
    assert len({s.source[1] for s in seen}) >= 4, "upstream source ports do not vary"


# -- stub domains --------------------------------------------------------------------


@pytest.mark.e2e
def test_stub_domains_have_their_own_upstreams(skyserve: Start,
                                               dns_upstream: Upstreams) -> None:
    default, corp, lab = dns_upstream(), dns_upstream(), dns_upstream()
    for up, address in ((default, "192.0.2.1"), (corp, "192.0.2.2"), (lab, "192.0.2.3")):
        for host in ("www.example.com", "corp.example", "www.corp.example",
                     "a.b.lab.corp.example"):
            up.add(host, "A", address)
    proc = skyserve(ZONES, [*FAST, *upstream_args(default),
                            "--stub", f"corp.example.={corp.address}",
                            "--stub", f"lab.corp.example={lab.address}"])
    assert texts(proc.query("www.example.com")) == ["192.0.2.1"]
    assert texts(proc.query("corp.example")) == ["192.0.2.2"]
    assert texts(proc.query("WWW.Corp.Example")) == ["192.0.2.2"]
    assert texts(proc.query("a.b.lab.corp.example")) == ["192.0.2.3"]
    assert default.count("www.corp.example") == 0 and corp.count("www.example.com") == 0
    assert corp.count("a.b.lab.corp.example") == 0 and lab.count("www.corp.example") == 0


@pytest.mark.e2e
@pytest.mark.parametrize("stub", ["x.skydns.test.", "skydns.test.", "Deep.X.SkyDNS.Test"])
def test_stub_inside_our_zone_is_rejected(skyserve: Start, stub: str) -> None:
    proc = skyserve(ZONES, ["--stub", f"{stub}=127.0.0.1:9"], wait=False)
    assert wait_for(lambda: not proc.running, 10)
    assert proc.returncode == 2
    assert "--stub" in proc.log_text()


# -- loops and ourselves -------------------------------------------------------------


@pytest.mark.e2e
def test_forwarding_loop_is_detected_at_start(skyserve: Start, dns_upstream: Upstreams) -> None:
    looper = dns_upstream(mode="looping")
    port = free_port()
    looper.loop_to = ("127.0.0.1", port)
    looper.add("www.example.com", "A", "192.0.2.1")
    proc = skyserve(ZONES, [*FAST, *upstream_args(looper)], dns_port=port)
    assert wait_for(lambda: "forwarding loop" in proc.log_text(), 3)
    budget = looper.loop_budget
    for _ in range(3):
        reply, took = timed(proc, "www.example.com")
        assert reply.rcode() in (dns.rcode.SERVFAIL, dns.rcode.REFUSED)
        assert took < 0.5
    time.sleep(0.3)
    assert looper.count("www.example.com") == 0
    assert looper.loop_budget == budget, "queries still went round the loop"
    assert proc.running


@pytest.mark.e2e
def test_our_own_address_is_not_an_upstream(skyserve: Start, dns_upstream: Upstreams) -> None:
    up = dns_upstream()
    up.add("www.example.com", "A", "192.0.2.1")
    port = free_port()
    proc = skyserve(ZONES, [*FAST, "--policy", "sequential", "--max-concurrent", "20",
                            "--upstream", f"127.0.0.1:{port}", *upstream_args(up)],
                    dns_port=port)
    reply, took = timed(proc, "www.example.com")
    assert texts(reply) == ["192.0.2.1"] and took < 0.25
    assert up.count("www.example.com") == 1
    assert "forwarding loop" not in proc.log_text()  # never even probed


@pytest.mark.parametrize(("ours", "upstream", "expected"), [
    ("127.0.0.1:53", "127.0.0.1:53", True),
    ("127.0.0.1:5353", "127.0.0.1:53", False),
    ("10.0.0.5:53", "10.0.0.5:53", True),
    ("0.0.0.0:53", "127.0.0.1:53", True),
    ("[::]:53", "[::1]:53", True),
    ("127.0.0.1:53", "127.0.0.2:53", False),  # another loopback resolver
    ("127.0.0.1:53", "127.0.0.53:53", False),  # e.g. systemd-resolved
    ("0.0.0.0:53", "192.0.2.53:53", False),  # a remote resolver, the default dns-addr
    (":53", "192.0.2.53", False),
    ("[::]:53", "[2001:db8::53]:53", False),
])
def test_which_upstreams_count_as_ourselves(ours: str, upstream: str, expected: bool) -> None:
    """``App._is_ourselves`` (no sockets): only addresses that reach this server."""
    app = SimpleNamespace(config=SimpleNamespace(dns_addr=ours))
    assert App._is_ourselves(app, upstream) is expected  # type: ignore[arg-type]


@pytest.mark.e2e
def test_resolv_conf_skips_ourselves_but_keeps_other_loopback_servers(
    skyserve: Start, tmp_path: Path
) -> None:
    """A resolv.conf naming our own address and another loopback resolver (port 53)."""
    if os.geteuid() != 0:
        pytest.skip("needs port 53 on 127.0.0.x")
    found = free_loopback_53(2)
    if len(found) < 2:
        pytest.skip("no free port 53 on 127.0.0.100-250 (is something bound to a wildcard :53?)")
    ours, other = found
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(f"# test\nnameserver {ours}\nnameserver {other}\noptions ndots:5\n")
    with DnsUpstream(53, host=other) as up:
        up.add("www.example.com", "A", "192.0.2.1")
        skyserve(ZONES, [*FAST, "--dns-addr", f"{ours}:53", "--resolv-conf", str(resolv)])
        q = dns.message.make_query("www.example.com", "A")
        reply = dns.query.udp(q, ours, port=53, timeout=2)
        assert reply.rcode() == dns.rcode.NOERROR, (
            f"{other}:53 from resolv.conf was not used (rcode {dns.rcode.to_text(reply.rcode())})")
        assert texts(reply) == ["192.0.2.1"]
        assert up.count("www.example.com") == 1


# -- CNAMEs leaving our zones --------------------------------------------------------


@pytest.mark.e2e
def test_cname_out_of_our_zone_is_completed_upstream(
    etcd: EtcdServer, clean_prefix: str, skyserve: Start, dns_upstream: Upstreams
) -> None:
    up = dns_upstream()
    up.add("www.example.com", "A", "192.0.2.10", ttl=200)
    etcd.put(key(clean_prefix, "alias.skydns.test"), '{"host":"www.example.com"}')
    proc = skyserve(ZONES, [*FAST, *upstream_args(up)])
    for tcp in (False, True):
        reply = proc.query("alias.skydns.test", tcp=tcp)
        assert reply.rcode() == dns.rcode.NOERROR
        assert texts(reply, "CNAME") == ["www.example.com."]
        assert texts(reply) == ["192.0.2.10"]
        owners = {(r.name.to_text(), dns.rdatatype.to_text(r.rdtype)) for r in reply.answer}
        assert owners == {("alias.skydns.test.", "CNAME"), ("www.example.com.", "A")}
    assert up.count("alias.skydns.test") == 0


@pytest.mark.e2e
def test_cname_out_of_our_zone_relays_the_upstreams_denial(
    etcd: EtcdServer, clean_prefix: str, skyserve: Start, dns_upstream: Upstreams
) -> None:
    """RFC 2308: the upstream's rcode and SOA come back after our CNAME, so the denial
    can be cached; without an upstream the CNAME alone is the authoritative answer."""
    up = dns_upstream()
    up.soa_ttl, up.soa_minimum = 90, 45
    up.add("www.example.com", "A", "192.0.2.10")
    etcd.put(key(clean_prefix, "gone.skydns.test"), '{"host":"nothing.example.com"}')
    etcd.put(key(clean_prefix, "nodata.skydns.test"), '{"host":"www.example.com"}')
    proc = skyserve(ZONES, [*FAST, *upstream_args(up)])
    for name, rcode in (("gone", dns.rcode.NXDOMAIN), ("nodata", dns.rcode.NOERROR)):
        reply = proc.query(f"{name}.skydns.test", "TXT")
        assert reply.rcode() == rcode
        assert [r.rdtype for r in reply.answer] == [dns.rdatatype.CNAME]
        [soa] = reply.authority
        assert soa.rdtype == dns.rdatatype.SOA and soa.name.to_text() == "."  # as sent
        assert 0 < soa.ttl <= 90 and soa[0].minimum == 45
    alone = skyserve(ZONES, FAST).query("gone.skydns.test", "TXT")
    assert alone.rcode() == dns.rcode.NOERROR and not alone.authority
    assert [r.rdtype for r in alone.answer] == [dns.rdatatype.CNAME]


@pytest.mark.e2e
def test_srv_and_mx_targets_outside_our_zones_get_glue_upstream(
    etcd: EtcdServer, clean_prefix: str, skyserve: Start, dns_upstream: Upstreams
) -> None:
    up = dns_upstream()
    up.add("srv.example.com", "A", "192.0.2.20", ttl=200)
    up.add("srv.example.com", "AAAA", "2001:db8::20", ttl=150)
    up.add("mx.example.com", "A", "192.0.2.25", ttl=100)
    etcd.put(key(clean_prefix, "x.svc.skydns.test"), '{"host":"srv.example.com","port":80}')
    etcd.put(key(clean_prefix, "m.mail.skydns.test"), '{"host":"mx.example.com","mail":true}')
    proc = skyserve(ZONES, [*FAST, *upstream_args(up)])
    for name, rdtype, want in (("svc", "SRV", {("srv.example.com.", "A", "192.0.2.20", 200),
                                               ("srv.example.com.", "AAAA", "2001:db8::20", 150)}),
                               ("mail", "MX", {("mx.example.com.", "A", "192.0.2.25", 100)})):
        reply = proc.query(f"{name}.skydns.test", rdtype)
        assert reply.rcode() == dns.rcode.NOERROR and reply.flags & dns.flags.AA
        got = {(r.name.to_text(), dns.rdatatype.to_text(r.rdtype), rd.to_text(), r.ttl)
               for r in reply.additional for rd in r}
        assert {g[:3] for g in got} == {w[:3] for w in want}
        assert all(w[3] - 2 <= g[3] <= w[3] for g, w in zip(sorted(got), sorted(want),
                                                             strict=True))  # upstream's TTLs
