"""Relayed replies kept in the answer cache and re-aged in place as seconds pass.

In-process: a pipeline whose forward cache is filled directly (no upstream is asked), and a
clock moved by hand (``time.monotonic`` patched). Each re-aged hit must be the very bytes a
fresh rendering from the forward cache gives at that moment.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import dns.message
import dns.rrset
import pytest

from skydns.record import name_labels
from skyserve.forward.cache import CacheSettings, ForwardCache, Key
from skyserve.forward.forwarder import Forwarder
from skyserve.forward.policy import ForwardSettings
from skyserve.lookup import Zone
from skyserve.pipeline.chain import Pipeline
from skyserve.pipeline.context import Settings
from skyserve.stats import ForwardStats
from skyserve.wire.response import parse_response

NAME = "www.example.org."
T0 = 5000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    c = Clock()
    monkeypatch.setattr("time.monotonic", c)
    yield c


def upstream_reply(ttls: tuple[int, ...] = (300,), ns_ttl: int = 100) -> bytes:
    q = dns.message.make_query(NAME, "A", use_edns=0)
    r = dns.message.make_response(q)
    for i, ttl in enumerate(ttls):
        r.answer.append(dns.rrset.from_text(NAME, ttl, "IN", "A", f"192.0.2.{i + 1}"))
    r.authority.append(dns.rrset.from_text("example.org.", ns_ttl, "IN", "NS", "ns.example.org."))
    return r.to_wire()


class Server:
    """A pipeline whose only upstream is never asked: every answer is in its forward cache."""

    def __init__(self, shuffle: bool = False, **cache: int) -> None:
        self.cache = ForwardCache(CacheSettings(**cache))  # type: ignore[arg-type]
        self.fwd = Forwarder(ForwardSettings(upstreams=("127.0.0.1:9",)), self.cache,
                             ForwardStats())
        self.pipeline = Pipeline(Settings([Zone(name_labels("skydns.test"))], shuffle=shuffle),
                                 forwarder=self.fwd)
        self.sent: list[bytes] = []

    def store(self, wire: bytes, at: float) -> None:
        self.cache.put(Key(name_labels(NAME), 1, 1, False), parse_response(wire), at)

    def ask(self, qid: int = 7) -> bytes:
        q = dns.message.make_query(NAME, "A", use_edns=0)
        q.id = qid
        before = len(self.sent)
        reply = self.pipeline.handle(q.to_wire(), False, ("127.0.0.1", 5353), self.send)
        if reply is None:  # from the forward cache: delivered through ``send`` at once
            assert len(self.sent) == before + 1
            reply = self.sent[-1]
        return reply

    def rendered_now(self, qid: int = 7) -> bytes:
        """What a fresh rendering from the forward cache gives (the answer cache emptied)."""
        self.pipeline.answers.clear()
        return self.ask(qid)

    def send(self, reply: bytes, _peer: object) -> None:
        self.sent.append(reply)


def ttls(reply: bytes) -> list[int]:
    """Each record's TTL, as sent (dnspython would merge an RRset's to the lowest)."""
    return [span.ttl for span in parse_response(reply).spans]


def test_a_hit_after_the_ttls_tick_has_them_lowered_byte_exact(clock: Clock) -> None:
    s = Server()
    s.store(upstream_reply(), T0)
    assert ttls(s.ask()) == [300, 100]
    hits = s.pipeline.stats.answer_hits
    for passed, want in ((0.5, [300, 100]), (1.2, [299, 99]), (2.0, [298, 98]),
                         (61.7, [239, 39])):
        clock.now = T0 + passed
        got = s.ask(qid=99)
        assert ttls(got) == want
        assert got == s.rendered_now(qid=99)
    assert s.pipeline.stats.answer_hits > hits  # the re-aged ones were answer-cache hits


def test_ttls_stop_at_zero(clock: Clock) -> None:
    s = Server(min_ttl=10)  # the entry lives 10 s although its records say 2 and 1
    s.store(upstream_reply(ttls=(2,), ns_ttl=1), T0)
    s.ask()
    clock.now = T0 + 1.5
    assert ttls(s.ask()) == [1, 0]
    clock.now = T0 + 4.1
    got = s.ask()
    assert ttls(got) == [0, 0]
    assert got == s.rendered_now()


def test_every_rotation_is_re_aged(clock: Clock) -> None:
    s = Server(shuffle=True)
    s.store(upstream_reply(ttls=(300, 200, 250)), T0)  # the entry lives 200 s
    s.ask()
    clock.now = T0 + 3.5
    seen = {s.ask() for _ in range(6)}
    assert len(seen) == 3  # the rotations, in turn
    assert all(ttls(r) == [197, 197, 197, 97] for r in seen)
    assert s.rendered_now() in seen


def test_rotated_records_keep_their_own_ttls(clock: Clock) -> None:
    s = Server(shuffle=True, min_ttl=10)  # the entry lives 10 s, longer than its records
    s.store(upstream_reply(ttls=(2, 3, 4)), T0)
    s.ask()
    clock.now = T0 + 1.5
    seen = {s.ask() for _ in range(3)}
    assert sorted(tuple(ttls(r)) for r in seen) == [(1, 2, 3, 9), (2, 3, 1, 9), (3, 1, 2, 9)]
    assert s.rendered_now() in seen


def test_an_expired_entry_is_not_re_aged(clock: Clock) -> None:
    s = Server()
    s.store(upstream_reply(ttls=(30,)), T0)
    q = s.ask()
    clock.now = T0 + 30.0
    assert s.pipeline.answers.hit(q, False, 0.0) is None  # the full path asks upstream


def test_a_replaced_entry_is_rendered_anew(clock: Clock) -> None:
    s = Server()
    s.store(upstream_reply(ttls=(300,)), T0)
    s.ask()
    s.store(upstream_reply(ttls=(300, 300)), T0 + 0.5)  # e.g. a prefetch brought a new reply
    clock.now = T0 + 1.1
    got = s.ask()
    assert len(dns.message.from_wire(got).answer[0]) == 2
    assert ttls(got) == [300, 300, 100]  # aged 0.6 s, in whole seconds: 0


def test_a_prefetch_due_takes_the_full_path(clock: Clock) -> None:
    s = Server(prefetch=1, prefetch_percent=10)
    s.store(upstream_reply(ttls=(100,)), T0)

    async def go() -> None:
        s.ask()
        s.ask()  # a hit: the entry counts toward prefetch
        clock.now = T0 + 50.5
        s.ask()  # re-aged: 49 s left is above 10%
        assert s.cache.stats["prefetch"] == 0
        clock.now = T0 + 91.5
        s.ask()  # below 10% left: the forwarder is asked, and starts a prefetch
        assert s.cache.stats["prefetch"] == 1
        s.fwd.close()

    asyncio.run(go())


def test_hits_from_the_answer_cache_count_toward_prefetch(clock: Clock) -> None:
    """Only the first ask reaches the forward cache; the next two are answer-cache hits,
    and must count too for the entry to reach three by the time its TTL runs low."""
    s = Server(prefetch=3, prefetch_percent=10)
    s.store(upstream_reply(ttls=(100,)), T0)

    async def go() -> None:
        for _ in range(3):
            s.ask()
        assert s.cache.stats["hits_success"] == 1  # the forward cache saw one
        clock.now = T0 + 91.5
        s.ask()
        assert s.cache.stats["prefetch"] == 1
        s.fwd.close()

    asyncio.run(go())
