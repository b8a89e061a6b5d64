"""The response cache in front of forwarding, end to end, counted at a loopback upstream.

skyserve also keeps each forwarded reply's exact bytes for up to a second (until its TTLs
would tick down), keyed by the query bytes minus the ID. Tests that are about the response
cache itself (capacities, LRU, the DO bit) send every query with a different EDNS buffer
size, so each one reaches the response cache; ``ask`` does that.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from tests.support.dns_upstream import DnsUpstream
from tests.support.dnsutil import addresses
from tests.support.skyserve_proc import SkyserveProcess

pytestmark = pytest.mark.e2e

Start = Callable[..., SkyserveProcess]
Upstreams = Callable[..., DnsUpstream]
ZONES = ("skydns.test.",)
FAST = ("--forward-timeout", "0.3", "--health-check", "0.1")
_payloads = itertools.count(1300)


def ask(proc: SkyserveProcess, name: str, rdtype: str = "A", **kw: object
        ) -> dns.message.Message:
    """A query whose bytes were never sent before (a fresh EDNS buffer size)."""
    return proc.query(name, rdtype, use_edns=0, payload=next(_payloads), **kw)  # type: ignore[arg-type]


def start(skyserve: Start, up: DnsUpstream, *args: str) -> SkyserveProcess:
    return skyserve(ZONES, [*FAST, "--upstream", up.address, *args])


def ttls(reply: dns.message.Message) -> list[int]:
    return [rrset.ttl for rrset in reply.answer + reply.authority]


# -- positive entries ----------------------------------------------------------------


def test_hit_decreases_ttl_and_echoes_id_and_case(skyserve: Start,
                                                 dns_upstream: Upstreams) -> None:
    up = dns_upstream()
    up.add("www.example.com", "A", "192.0.2.1", ttl=300)
    proc = start(skyserve, up)
    first = proc.query("www.example.com")
    assert ttls(first) == [300]
    for i in range(3):
        q = dns.message.make_query("WwW.ExAmPlE.CoM", "A")
        q.id = 1000 + i
        reply = dns.query.udp(q, "127.0.0.1", port=proc.dns_port, timeout=2)
        assert reply.id == 1000 + i
        assert reply.question[0].name.to_text() == "WwW.ExAmPlE.CoM."  # case kept on the wire
        assert addresses(reply) == ["192.0.2.1"]
    time.sleep(1.2)
    later = proc.query("www.example.com")
    assert addresses(later) == ["192.0.2.1"]
    assert 295 <= ttls(later)[0] <= 299, ttls(later)
    assert up.count("www.example.com") == 1


# -- negative entries ----------------------------------------------------------------


@pytest.mark.parametrize(("soa_ttl", "minimum", "rdtype"),
                         [(60, 1, "A"), (1, 60, "A"), (1, 60, "AAAA")],
                         ids=["minimum-smaller", "ttl-smaller", "nodata"])
def test_negative_ttl_is_min_of_soa_ttl_and_minimum(
    skyserve: Start, dns_upstream: Upstreams, soa_ttl: int, minimum: int, rdtype: str
) -> None:
    up = dns_upstream()
    up.soa_ttl, up.soa_minimum = soa_ttl, minimum
    up.add("exists.example.com", "A", "192.0.2.1")
    name = "exists.example.com" if rdtype == "AAAA" else "nothing.example.com"
    want = dns.rcode.NOERROR if rdtype == "AAAA" else dns.rcode.NXDOMAIN
    proc = start(skyserve, up, "--cache-min-ttl", "0")
    for _ in range(3):
        reply = ask(proc, name, rdtype)
        assert reply.rcode() == want and not reply.answer and reply.authority
    assert up.count(name, rdtype) == 1
    time.sleep(1.3)  # the negative TTL is 1 s, whichever of the two is smaller
    assert ask(proc, name, rdtype).rcode() == want
    assert up.count(name, rdtype) == 2


def test_separate_capacities_and_lru_eviction(skyserve: Start, dns_upstream: Upstreams) -> None:
    up = dns_upstream()
    for host in ("a", "b", "c"):
        up.add(f"{host}.example.com", "A", "192.0.2.1")
    proc = start(skyserve, up, "--cache-success", "2", "--cache-denial", "1")
    ask(proc, "a.example.com")
    ask(proc, "b.example.com")
    ask(proc, "a.example.com")  # a is now the most recently used
    assert ask(proc, "nx1.example.com").rcode() == dns.rcode.NXDOMAIN  # other table
    ask(proc, "c.example.com")  # evicts b, the least recently used
    ask(proc, "a.example.com")
    assert up.count("a.example.com") == 1
    ask(proc, "b.example.com")
    assert up.count("b.example.com") == 2
    assert proc.metric("coredns_cache_evictions_total", type="success") >= 1
    assert proc.metric("coredns_cache_evictions_total", type="denial") == 0
    # The denial table holds one entry.
    ask(proc, "nx1.example.com")
    assert up.count("nx1.example.com") == 1
    ask(proc, "nx2.example.com")
    ask(proc, "nx1.example.com")
    assert up.count("nx1.example.com") == 2
    assert proc.metric("coredns_cache_evictions_total", type="denial") >= 1
    assert proc.metric("coredns_cache_entries", type="denial") == 1
    assert proc.metric("coredns_cache_entries", type="success") == 2


def test_capacity_one_evicts(skyserve: Start, dns_upstream: Upstreams) -> None:
    up = dns_upstream()
    up.add("a.example.com", "A", "192.0.2.1")
    up.add("b.example.com", "A", "192.0.2.2")
    proc = start(skyserve, up, "--cache-success", "1", "--cache-denial", "1")
    ask(proc, "a.example.com")
    ask(proc, "a.example.com")
    assert up.count("a.example.com") == 1
    ask(proc, "b.example.com")
    ask(proc, "a.example.com")
    assert up.count("a.example.com") == 2
    assert proc.metric("coredns_cache_evictions_total", type="success") == 2


def test_do_bit_is_part_of_the_key(skyserve: Start, dns_upstream: Upstreams) -> None:
    up = dns_upstream()
    up.add("www.example.com", "A", "192.0.2.1")
    proc = start(skyserve, up)
    plain = ask(proc, "www.example.com")
    signed = ask(proc, "www.example.com", want_dnssec=True)
    assert not plain.ednsflags & dns.flags.DO and signed.ednsflags & dns.flags.DO
    assert up.count("www.example.com") == 2
    assert sorted(s.do for s in up.queries("www.example.com")) == [False, True]
    for _ in range(2):
        ask(proc, "www.example.com")
        ask(proc, "www.example.com", want_dnssec=True)
    assert up.count("www.example.com") == 2


# -- TTL caps ------------------------------------------------------------------------


def test_cache_max_ttl_expires_entries_early(skyserve: Start, dns_upstream: Upstreams) -> None:
    up = dns_upstream()
    up.add("www.example.com", "A", "192.0.2.1", ttl=300)
    proc = start(skyserve, up, "--cache-max-ttl", "1", "--cache-min-ttl", "0")
    ask(proc, "www.example.com")
    ask(proc, "www.example.com")
    assert up.count("www.example.com") == 1
    time.sleep(1.2)
    ask(proc, "www.example.com")
    assert up.count("www.example.com") == 2


def test_cache_max_ttl_caps_the_ttl_clients_see(skyserve: Start,
                                               dns_upstream: Upstreams) -> None:
    """A capped entry must not tell clients (and their caches) to keep it for 300 s."""
    up = dns_upstream()
    up.add("www.example.com", "A", "192.0.2.1", ttl=300)
    proc = start(skyserve, up, "--cache-max-ttl", "5", "--cache-min-ttl", "0")
    first = ask(proc, "www.example.com")
    hit = ask(proc, "www.example.com")
    assert up.count("www.example.com") == 1
    assert ttls(hit)[0] <= 5, f"a cache hit of a 5 s entry says TTL {ttls(hit)[0]}"
    assert ttls(first)[0] <= 5, f"the reply that filled a 5 s entry says TTL {ttls(first)[0]}"


# -- serve-stale and prefetch ---------------------------------------------------------


def test_serve_stale_when_upstreams_fail(skyserve: Start, dns_upstream: Upstreams) -> None:
    up = dns_upstream()
    up.add("www.example.com", "A", "192.0.2.1", ttl=1)
    proc = start(skyserve, up, "--serve-stale", "10s", "--cache-min-ttl", "0")
    assert addresses(proc.query("www.example.com")) == ["192.0.2.1"]
    up.mode = "drop"
    time.sleep(1.2)
    before = proc.metric("coredns_cache_served_stale_total")
    t0 = time.monotonic()
    stale = proc.query("www.example.com", timeout=3)
    assert time.monotonic() - t0 < 1.0
    assert stale.rcode() == dns.rcode.NOERROR and addresses(stale) == ["192.0.2.1"]
    assert ttls(stale) == [30]
    assert up.count("www.example.com") == 2  # it did try the upstream first
    assert proc.metric("coredns_cache_served_stale_total") == before + 1
    stale = proc.query("www.example.com", use_edns=0, timeout=3)
    assert [o.code for o in stale.options] == [3]  # type: ignore[attr-defined]  # RFC 8914


def test_serve_stale_has_a_maximum_staleness(skyserve: Start, dns_upstream: Upstreams) -> None:
    up = dns_upstream()
    up.add("www.example.com", "A", "192.0.2.1", ttl=1)
    proc = start(skyserve, up, "--serve-stale", "1s", "--cache-min-ttl", "0")
    proc.query("www.example.com")
    up.mode = "drop"
    time.sleep(2.3)  # TTL 1 s + 1 s of staleness: too old now
    assert proc.query("www.example.com", timeout=3).rcode() == dns.rcode.SERVFAIL


def test_prefetch_refreshes_popular_entries_before_they_expire(
    skyserve: Start, dns_upstream: Upstreams
) -> None:
    up = dns_upstream()
    up.add("www.example.com", "A", "192.0.2.1", ttl=3)
    proc = start(skyserve, up, "--prefetch", "2", "--prefetch-percent", "50",
                 "--cache-min-ttl", "0")
    t0 = time.monotonic()
    refreshed_at = None
    while time.monotonic() - t0 < 2.8:  # the first entry expires at 3 s
        reply = proc.query("www.example.com")
        assert reply.rcode() == dns.rcode.NOERROR and addresses(reply) == ["192.0.2.1"]
        if refreshed_at is None and up.count("www.example.com") == 2:
            refreshed_at = time.monotonic() - t0
        time.sleep(0.1)
    assert refreshed_at is not None, "no prefetch before the entry expired"
    assert refreshed_at >= 1.4  # not before 50 % of the TTL was left
    assert up.count("www.example.com") == 2  # every other answer was a cache hit
    assert proc.metric("coredns_cache_prefetch_total") == 1


def test_cache_off_sends_every_query_upstream(skyserve: Start, dns_upstream: Upstreams) -> None:
    up = dns_upstream()
    up.add("www.example.com", "A", "192.0.2.1")
    proc = start(skyserve, up, "--cache-success", "0", "--cache-denial", "0")
    for _ in range(5):
        assert addresses(proc.query("www.example.com")) == ["192.0.2.1"]
        assert proc.query("nothing.example.com").rcode() == dns.rcode.NXDOMAIN
    assert up.count("www.example.com") == 5
    assert up.count("nothing.example.com") == 5
