"""``ForwardCache`` on its own: upstream replies (built with dnspython) in, entries out.

Time is passed in explicitly, so nothing here sleeps.
"""

from __future__ import annotations

import dns.flags
import dns.message
import dns.rcode
import dns.rrset
import pytest

from skydns.record import name_labels
from skyserve.forward.cache import STALE_TTL, CachedResponse, CacheSettings, ForwardCache, Key
from skyserve.wire import response as wire

T0 = 1000.0


def key(name: str = "www.example.com", qtype: int = 1, do: bool = False) -> Key:
    return Key(name_labels(name), qtype, 1, do)


def reply(name: str = "www.example.com", *, ttls: tuple[int, ...] = (300,),
          rcode: int = dns.rcode.NOERROR, soa: tuple[int, int] | None = None,
          tc: bool = False) -> wire.Response:
    """A parsed upstream reply: A records with ``ttls``, or a negative one with an SOA."""
    query = dns.message.make_query(name, "A", use_edns=0)
    msg = dns.message.make_response(query)
    msg.set_rcode(rcode)
    for i, ttl in enumerate(ttls if rcode == dns.rcode.NOERROR else ()):
        msg.answer.append(dns.rrset.from_text(query.question[0].name, ttl, "IN", "A",
                                              f"192.0.2.{i + 1}"))
    if soa is not None:
        soa_ttl, minimum = soa
        msg.authority.append(dns.rrset.from_text(
            "example.com.", soa_ttl, "IN", "SOA",
            f"ns.example.com. host.example.com. 1 7200 1800 86400 {minimum}"))
    if tc:
        msg.flags |= dns.flags.TC
    return wire.parse_response(msg.to_wire())


def cache(**settings: object) -> ForwardCache:
    return ForwardCache(CacheSettings(**settings))  # type: ignore[arg-type]


def nxdomain(name: str = "nx.example.com", soa: tuple[int, int] = (60, 60)) -> wire.Response:
    return reply(name, rcode=dns.rcode.NXDOMAIN, soa=soa)


# -- positive entries ----------------------------------------------------------------


def test_positive_entry_lives_for_the_smallest_answer_ttl() -> None:
    c = cache()
    entry = c.put(key(), reply(ttls=(300, 60, 120)), T0)
    assert entry is not None and entry.ttl == 60 and not entry.denial
    got, fresh = c.get(key(), T0 + 59.9)
    assert got is entry and fresh and got.age(T0 + 59.9) == 59
    assert c.get(key(), T0 + 60.0) == (None, False)
    assert c.sizes() == {"success": 0, "denial": 0}


def test_success_ttl_caps_and_min_ttl_floors() -> None:
    c = cache(success_ttl=30, min_ttl=10)
    capped = c.put(key("a.example.com"), reply("a.example.com", ttls=(300,)), T0)
    floored = c.put(key("b.example.com"), reply("b.example.com", ttls=(2,)), T0)
    assert capped is not None and capped.ttl == 30
    assert floored is not None and floored.ttl == 10


def test_key_is_name_type_class_and_do_bit() -> None:
    c = cache()
    c.put(key(), reply(), T0)
    assert c.get(key(), T0)[0] is not None
    assert c.get(key("WWW.example.com"), T0)[0] is not None  # labels are lower-cased
    assert c.get(key(do=True), T0) == (None, False)
    assert c.get(key(qtype=28), T0) == (None, False)
    assert c.get(Key(name_labels("www.example.com"), 1, 3, False), T0) == (None, False)
    c.put(key(do=True), reply(ttls=(5,)), T0)
    assert c.get(key(do=True), T0)[0].ttl == 5  # type: ignore[union-attr]
    assert c.get(key(), T0)[0].ttl == 300  # type: ignore[union-attr]


@pytest.mark.parametrize("rcode", [dns.rcode.SERVFAIL, dns.rcode.REFUSED, dns.rcode.FORMERR])
def test_failures_are_not_cached(rcode: int) -> None:
    c = cache()
    assert c.put(key(), reply(rcode=rcode, soa=(60, 60)), T0) is None
    assert len(c) == 0


def test_truncated_replies_are_not_cached() -> None:
    c = cache()
    assert c.put(key(), reply(tc=True), T0) is None
    assert len(c) == 0


# -- negative entries (RFC 2308) ------------------------------------------------------


@pytest.mark.parametrize(("soa", "ttl"), [((60, 20), 20), ((20, 60), 20), ((45, 45), 45)])
def test_negative_ttl_is_min_of_soa_ttl_and_minimum(soa: tuple[int, int], ttl: int) -> None:
    c = cache(min_ttl=0)
    entry = c.put(key("nx.example.com"), nxdomain(soa=soa), T0)
    assert entry is not None and entry.denial and entry.ttl == ttl
    assert c.get(key("nx.example.com"), T0 + ttl - 0.1)[1] is True
    assert c.get(key("nx.example.com"), T0 + ttl) == (None, False)


def test_nodata_is_a_negative_entry() -> None:
    c = cache(min_ttl=0)
    entry = c.put(key(), reply(ttls=(), soa=(60, 7)), T0)
    assert entry is not None and entry.denial and entry.ttl == 7
    assert c.sizes() == {"success": 0, "denial": 1}


def test_negative_reply_without_soa_is_not_cached() -> None:
    c = cache()
    assert c.put(key("nx.example.com"), reply("nx.example.com", rcode=dns.rcode.NXDOMAIN),
                 T0) is None
    assert c.put(key(), reply(ttls=()), T0) is None
    assert len(c) == 0


def test_denial_ttl_caps_negative_entries() -> None:
    c = cache(denial_ttl=5, min_ttl=0)
    entry = c.put(key("nx.example.com"), nxdomain(soa=(3600, 3600)), T0)
    assert entry is not None and entry.ttl == 5


# -- capacities and LRU --------------------------------------------------------------


def test_separate_capacities() -> None:
    c = cache(success_capacity=1, denial_capacity=2)
    c.put(key("a.example.com"), reply("a.example.com"), T0)
    c.put(key("nx1.example.com"), nxdomain("nx1.example.com"), T0)
    c.put(key("nx2.example.com"), nxdomain("nx2.example.com"), T0)
    assert c.sizes() == {"success": 1, "denial": 2}
    c.put(key("b.example.com"), reply("b.example.com"), T0)
    assert c.sizes() == {"success": 1, "denial": 2}
    assert c.get(key("a.example.com"), T0) == (None, False)
    assert c.get(key("nx1.example.com"), T0)[0] is not None
    assert c.stats["evictions_success"] == 1 and c.stats["evictions_denial"] == 0


def test_lru_eviction_keeps_what_was_used() -> None:
    c = cache(success_capacity=2)
    c.put(key("a.example.com"), reply("a.example.com"), T0)
    c.put(key("b.example.com"), reply("b.example.com"), T0)
    assert c.get(key("a.example.com"), T0 + 1)[1]  # a is now the most recently used
    c.put(key("c.example.com"), reply("c.example.com"), T0 + 2)
    assert c.get(key("b.example.com"), T0 + 3) == (None, False)
    assert c.get(key("a.example.com"), T0 + 3)[0] is not None
    assert c.get(key("c.example.com"), T0 + 3)[0] is not None


def test_replacing_an_entry_does_not_evict() -> None:
    c = cache(success_capacity=2)
    c.put(key("a.example.com"), reply("a.example.com"), T0)
    c.put(key("b.example.com"), reply("b.example.com"), T0)
    c.put(key("a.example.com"), reply("a.example.com", ttls=(10,)), T0 + 1)
    assert c.sizes()["success"] == 2 and c.stats["evictions_success"] == 0


@pytest.mark.parametrize("which", ["success", "denial"])
def test_zero_capacity_caches_nothing(which: str) -> None:
    c = cache(**{f"{which}_capacity": 0})
    response = reply() if which == "success" else nxdomain("www.example.com")
    assert c.put(key(), response, T0) is None
    assert len(c) == 0


def test_a_newer_negative_reply_replaces_a_positive_one() -> None:
    """A refresh (e.g. a prefetch) that finds the name gone must not be ignored."""
    c = cache(min_ttl=0)
    c.put(key(), reply(ttls=(300,)), T0)
    c.put(key(), nxdomain("www.example.com", soa=(300, 300)), T0 + 10)
    entry, fresh = c.get(key(), T0 + 11)
    assert fresh and entry is not None
    assert entry.denial, "the older positive answer is still served after the NXDOMAIN"
    assert c.sizes() == {"success": 0, "denial": 1}


def test_an_older_negative_reply_does_not_come_back() -> None:
    """Once a newer positive entry expires, the NXDOMAIN it replaced must not resurface."""
    c = cache(min_ttl=0)
    c.put(key(), nxdomain("www.example.com", soa=(300, 300)), T0)
    c.put(key(), reply(ttls=(5,)), T0 + 10)
    entry, _ = c.get(key(), T0 + 11)
    assert entry is not None and not entry.denial
    assert c.get(key(), T0 + 16) == (None, False), "the replaced NXDOMAIN came back"


# -- stale entries (RFC 8767) ---------------------------------------------------------


def test_stale_window() -> None:
    c = cache(stale=10.0, min_ttl=0)
    c.put(key(), reply(ttls=(5,)), T0)
    entry, fresh = c.get(key(), T0 + 6)
    assert entry is not None and not fresh
    assert c.get(key(), T0 + 14.9)[0] is entry
    assert c.get(key(), T0 + 15.1) == (None, False)
    assert len(c) == 0
    assert STALE_TTL == 30


def test_no_stale_window_by_default() -> None:
    c = cache(min_ttl=0)
    c.put(key(), reply(ttls=(5,)), T0)
    assert c.get(key(), T0 + 5) == (None, False)
    c.served_stale()
    assert c.stats["served_stale"] == 1


# -- prefetch ------------------------------------------------------------------------


def test_prefetch_after_enough_hits_and_below_the_percentage() -> None:
    c = cache(prefetch=2, prefetch_percent=50, min_ttl=0)
    c.put(key(), reply(ttls=(10,)), T0)
    entry, _ = c.get(key(), T0 + 1)
    assert entry is not None and not c.wants_prefetch(entry, T0 + 1)  # one hit
    c.get(key(), T0 + 2)
    assert not c.wants_prefetch(entry, T0 + 2)  # two hits, but 80 % left
    c.get(key(), T0 + 6)
    assert c.wants_prefetch(entry, T0 + 6)  # 40 % left
    assert not c.wants_prefetch(entry, T0 + 7)  # only once
    assert c.stats["prefetch"] == 1


def test_prefetch_off() -> None:
    c = cache(min_ttl=0)
    c.put(key(), reply(ttls=(10,)), T0)
    for t in range(1, 10):
        entry, _ = c.get(key(), T0 + t)
        assert entry is not None and not c.wants_prefetch(entry, T0 + t)


def test_a_new_entry_starts_counting_again() -> None:
    c = cache(prefetch=1, prefetch_percent=50, min_ttl=0)
    c.put(key(), reply(ttls=(10,)), T0)
    old, _ = c.get(key(), T0 + 6)
    assert old is not None and c.wants_prefetch(old, T0 + 6)
    new = c.put(key(), reply(ttls=(10,)), T0 + 6)
    assert new is not None and new is not old and new.hits == 0 and not new.prefetching


# -- serves: may kept reply bytes be re-aged? ----------------------------------------


def test_serves_a_fresh_current_entry_and_keeps_it_recently_used() -> None:
    c = cache(success_capacity=2)
    first = c.put(key("a.example.com"), reply("a.example.com"), T0)
    c.put(key("b.example.com"), reply("b.example.com"), T0)
    assert first is not None and c.serves(key("a.example.com"), first, T0 + 10)
    c.put(key("c.example.com"), reply("c.example.com"), T0)  # evicts b, not a
    assert c.get(key("a.example.com"), T0 + 10)[0] is first
    assert c.get(key("b.example.com"), T0 + 10)[0] is None
    negative = c.put(key("nx.example.com"), nxdomain(), T0)
    assert negative is not None and c.serves(key("nx.example.com"), negative, T0 + 10)


def test_serves_nothing_expired_replaced_or_evicted() -> None:
    c = cache(success_capacity=1)
    old = c.put(key(), reply(ttls=(60,)), T0)
    assert old is not None and not c.serves(key(), old, T0 + 60)
    new = c.put(key(), reply(ttls=(60,)), T0 + 1)
    assert new is not None and not c.serves(key(), old, T0 + 2) and c.serves(key(), new, T0 + 2)
    c.put(key("other.example.com"), reply("other.example.com"), T0 + 2)
    assert not c.serves(key(), new, T0 + 3)


def test_serves_nothing_due_for_prefetch_and_counts_no_prefetch() -> None:
    c = cache(prefetch=1, prefetch_percent=50, min_ttl=0)
    entry = c.put(key(), reply(ttls=(10,)), T0)
    assert entry is not None
    c.get(key(), T0 + 1)
    assert c.serves(key(), entry, T0 + 4)  # 60 % left
    assert not c.serves(key(), entry, T0 + 6)  # 40 % left: only ``get`` starts a prefetch
    assert c.stats["prefetch"] == 0 and c.wants_prefetch(entry, T0 + 6)


# -- statistics ----------------------------------------------------------------------


def test_stats() -> None:
    c = cache(min_ttl=0)
    c.put(key(), reply(), T0)
    c.put(key("nx.example.com"), nxdomain(), T0)
    c.get(key(), T0)
    c.get(key(), T0)
    c.get(key("nx.example.com"), T0)
    c.get(key("other.example.com"), T0)
    assert c.stats["requests"] == 4
    assert c.stats["hits_success"] == 2 and c.stats["hits_denial"] == 1
    assert c.stats["misses"] == 1


def test_entry_age() -> None:
    e = CachedResponse(reply(), 60, False, T0)
    assert (e.age(T0), e.age(T0 + 0.99), e.age(T0 + 59.5)) == (0, 0, 59)
    assert e.expires == T0 + 60
