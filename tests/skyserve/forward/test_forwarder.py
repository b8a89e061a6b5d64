"""The forwarder in-process against the scriptable test upstream, as CoreDNS tests its
forward plugin: real sockets on 127.0.0.1, one event loop, no skyserve process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import pytest

from skydns.record import name_labels
from skyserve.forward.cache import CacheSettings, ForwardCache
from skyserve.forward.forwarder import Forwarder
from skyserve.forward.policy import ForwardSettings, Outcome
from skyserve.stats import ForwardStats
from skyserve.wire import constants as T
from skyserve.wire.query import encode_name
from skyserve.wire.response import section_records
from tests.support.dns_upstream import DnsUpstream


@pytest.fixture
def upstreams() -> Iterator[Callable[..., DnsUpstream]]:
    started: list[DnsUpstream] = []

    def start(mode: str = "ok") -> DnsUpstream:
        up = DnsUpstream(mode=mode).start()
        up.add("www.example.org", "A", "192.0.2.1", ttl=60)
        started.append(up)
        return up

    yield start
    for up in started:
        up.close()


async def fetch(forwarder: Forwarder, name: str = "www.example.org") -> Outcome:
    """One question through ``forwarder`` on the running loop; its outcome."""
    done: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
    labels = name_labels(name)
    forwarder.fetch(labels, encode_name(labels), T.A, T.CLASS_IN, flags=T.RD, do=False,
                    tcp=False, done=done.set_result)
    return await asyncio.wait_for(done, 5.0)


def ask(forwarder: Forwarder) -> Outcome:
    """One question on a loop of its own (a forwarder lives on one loop: close it after)."""

    async def go() -> Outcome:
        try:
            return await fetch(forwarder)
        finally:
            forwarder.close()

    return asyncio.run(go())


def forwarder(*ups: DnsUpstream, cache: ForwardCache | None = None,
              **settings: object) -> Forwarder:
    options = {"policy": "sequential", "read_timeout": 0.3, **settings}
    return Forwarder(ForwardSettings(upstreams=tuple(u.address for u in ups),  # type: ignore[arg-type]
                                     **options), cache, ForwardStats())


def addresses(outcome: Outcome) -> list[bytes]:
    assert outcome.response is not None
    return [r.rdata[0] for r in section_records(outcome.response, 0) if r.rtype == T.A]


def test_an_answer_comes_back_and_is_counted(upstreams: Callable[..., DnsUpstream]) -> None:
    up = upstreams()
    fwd = forwarder(up)
    outcome = ask(fwd)
    assert addresses(outcome) == [bytes([192, 0, 2, 1])]
    assert fwd.stats.requests_to[up.address] == 1
    assert up.count("www.example.org") == 1


@pytest.mark.parametrize("mode", ["servfail", "refused", "drop"])
def test_a_failing_upstream_fails_over_to_the_next(upstreams: Callable[..., DnsUpstream],
                                                   mode: str) -> None:
    bad, good = upstreams(mode), upstreams()
    fwd = forwarder(bad, good)
    assert addresses(ask(fwd)) == [bytes([192, 0, 2, 1])]
    assert bad.count("www.example.org") == 1 and good.count("www.example.org") == 1


def test_servfail_when_every_upstream_fails(upstreams: Callable[..., DnsUpstream]) -> None:
    fwd = forwarder(upstreams("drop"), upstreams("servfail"))
    outcome = ask(fwd)
    assert outcome.response is None and outcome.rcode == T.SERVFAIL
    assert fwd.stats.counters["upstream_failures"] == 1  # the drop; SERVFAIL is an answer


def test_a_truncated_reply_is_asked_again_over_tcp(upstreams: Callable[..., DnsUpstream]
                                                   ) -> None:
    up = upstreams("truncate")
    outcome = ask(forwarder(up))
    assert addresses(outcome) == [bytes([192, 0, 2, 1])]
    assert up.count("www.example.org", transport="udp") == 1
    assert up.count("www.example.org", transport="tcp") == 1


@pytest.mark.parametrize("mode", ["wrong_id", "wrong_question", "from_other_port"])
def test_forged_replies_do_not_count(upstreams: Callable[..., DnsUpstream], mode: str) -> None:
    up = upstreams(mode)
    up.also_answer = True
    outcome = ask(forwarder(up))
    assert addresses(outcome) == [bytes([192, 0, 2, 1])]


def test_serve_stale_when_every_upstream_fails(upstreams: Callable[..., DnsUpstream]) -> None:
    up = upstreams()
    cache = ForwardCache(CacheSettings(min_ttl=0, stale=3600))
    fwd = forwarder(up, cache=cache)

    async def scenario() -> tuple[Outcome, Outcome]:
        fresh = await fetch(fwd)
        up.mode = "drop"
        for entry in cache._success.values():
            entry.expires = time.monotonic() - 1  # expired, still within the stale window
        stale = await fetch(fwd)
        fwd.close()
        return fresh, stale

    fresh, stale = asyncio.run(scenario())
    assert not fresh.stale and not fresh.cached
    assert stale.stale and addresses(stale) == [bytes([192, 0, 2, 1])]
    assert cache.stats["served_stale"] == 1


def test_max_concurrent_refuses_the_extra_query(upstreams: Callable[..., DnsUpstream]) -> None:
    up = upstreams()
    up.delay = 0.3
    fwd = forwarder(up, max_concurrent=1, read_timeout=2.0)

    async def both() -> list[Outcome]:
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in range(2)]
        labels = name_labels("www.example.org")
        for f in futures:
            fwd.fetch(labels, encode_name(labels), T.A, T.CLASS_IN, flags=T.RD, do=False,
                      tcp=False, done=f.set_result)
        try:
            return list(await asyncio.wait_for(asyncio.gather(*futures), 5))
        finally:
            fwd.close()

    first, second = asyncio.run(both())
    assert addresses(first) == [bytes([192, 0, 2, 1])]
    assert second.response is None and second.rcode == T.REFUSED
    assert fwd.stats.counters["max_concurrent_rejects"] == 1


def test_an_unhealthy_upstream_is_health_checked_until_it_answers(
    upstreams: Callable[..., DnsUpstream]
) -> None:
    up = upstreams("drop")
    fwd = forwarder(up, max_fails=1, health_check=0.05)

    async def scenario() -> tuple[int, int]:
        await fetch(fwd)  # timed out: one failure, so a health check starts
        unhealthy = fwd.pools[0].upstreams[0].fails
        up.mode = "ok"
        for _ in range(100):
            await asyncio.sleep(0.05)
            if fwd.pools[0].upstreams[0].fails == 0:
                break
        fwd.close()
        return unhealthy, fwd.pools[0].upstreams[0].fails

    unhealthy, after = asyncio.run(scenario())
    assert unhealthy == 1 and after == 0
    assert up.probes >= 1
