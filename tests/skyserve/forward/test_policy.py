"""The forwarding policy on its own: no sockets, no event loop."""

from __future__ import annotations

import pytest

from skyserve.forward import policy
from skyserve.forward.policy import ForwardSettings, Outcome, Pool, Upstream, Verdict
from skyserve.wire.constants import FORMERR, NOERROR, NXDOMAIN, REFUSED, SERVFAIL


def pool(n: int, kind: str = "sequential") -> Pool:
    return Pool((), [Upstream(f"127.0.0.{i + 1}:53") for i in range(n)], kind)


@pytest.mark.parametrize(("rcode", "truncated", "tcp", "verdict"), [
    (NOERROR, False, False, Verdict.ANSWER),
    (NXDOMAIN, False, False, Verdict.ANSWER),
    (FORMERR, False, False, Verdict.ANSWER),  # an answer, if not a helpful one: relayed
    (SERVFAIL, False, False, Verdict.NEXT),
    (REFUSED, False, True, Verdict.NEXT),
    (SERVFAIL, True, False, Verdict.NEXT),  # a failure first, whatever else it says
    (NOERROR, True, False, Verdict.RETRY_TCP),
    (NOERROR, True, True, Verdict.ANSWER),  # TC over TCP: nothing better to try
])
def test_what_a_reply_means(rcode: int, truncated: bool, tcp: bool, verdict: Verdict) -> None:
    assert policy.judge(rcode, truncated, tcp) is verdict


def test_sequential_keeps_the_configured_order_with_failing_ones_last() -> None:
    p = pool(3)
    a, b, c = p.upstreams
    assert p.order(max_fails=2) == [a, b, c]
    a.fails = 2
    assert p.order(max_fails=2) == [b, c, a]  # unhealthy, but still tried when all else fails


def test_round_robin_starts_one_further_each_time() -> None:
    p = pool(3, "round_robin")
    firsts = [p.order(max_fails=2)[0] for _ in range(6)]
    assert firsts[:3] == [p.upstreams[1], p.upstreams[2], p.upstreams[0]]
    assert firsts[3:] == firsts[:3]


def test_random_uses_every_upstream_first_sometimes() -> None:
    p = pool(3, "random")
    firsts = {p.order(max_fails=2)[0].name for _ in range(200)}
    assert firsts == {u.name for u in p.upstreams}


def test_a_looping_upstream_is_never_tried() -> None:
    p = pool(2)
    p.upstreams[0].looped = True
    assert p.order(max_fails=2) == [p.upstreams[1]]


def test_failures_start_one_health_check_at_max_fails() -> None:
    up = Upstream("127.0.0.1:53")
    assert policy.failed(up, max_fails=2) is False
    assert policy.failed(up, max_fails=2) is True  # the second failure starts it
    assert policy.failed(up, max_fails=2) is False  # already checking
    assert not up.healthy(2)


def test_giving_up_serves_stale_when_allowed_else_servfail() -> None:
    stale = Outcome(None, stale=True, cached=True)
    assert policy.give_up(stale, True) is stale
    # RFC 8914: 22 when no upstream answered in time, 23 when the network failed us.
    assert policy.give_up(None, False) == Outcome(None, SERVFAIL, ede=22)
    assert policy.give_up(None, True) == Outcome(None, SERVFAIL, ede=23)


def test_the_longest_stub_domain_wins() -> None:
    settings = ForwardSettings(upstreams=("127.0.0.1:53",),
                               stubs=(("corp.example.", ("127.0.0.2:53",)),
                                      ("dev.corp.example.", ("127.0.0.3:53",))))
    pools = policy.pools(settings)
    assert policy.pool_for(pools, ("x", "dev", "corp", "example")).upstreams[0].port == 53
    chosen = policy.pool_for(pools, ("x", "dev", "corp", "example"))
    assert chosen is not None and chosen.upstreams[0].host == "127.0.0.3"
    other = policy.pool_for(pools, ("www", "corp", "example"))
    assert other is not None and other.upstreams[0].host == "127.0.0.2"
    default = policy.pool_for(pools, ("example", "org"))
    assert default is not None and default.upstreams[0].host == "127.0.0.1"
    assert policy.pool_for(policy.pools(ForwardSettings()), ("example", "org")) is None
