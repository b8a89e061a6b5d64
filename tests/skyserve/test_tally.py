"""The tally: answer-cache hits are counted under ids of their own and exported as one."""

from __future__ import annotations

from skyserve import metrics
from skyserve.stats import Stats
from skyserve.tally import Stat

A = Stat("udp", "skydns.test.", "A", "NOERROR", False, "etcd", 40, 56, 0)


def test_hits_are_told_apart_from_the_replies_they_repeat() -> None:
    stats = Stats()
    tally = stats.tally
    reply, hit = tally.id(A), tally.hit_id(A)
    assert tally.hit_id(A) == hit and tally.id(A) == reply
    tally.counts[reply] += 2  # two rendered replies (the first duration bucket too)
    tally.counts[hit] += 3
    tally.seconds[hit] += 0.5
    assert stats.answer_hits == 3


def test_a_hit_and_its_reply_are_one_series_in_the_metrics() -> None:
    stats = Stats()
    tally = stats.tally
    tally.counts[tally.id(A)] += 2
    tally.counts[tally.hit_id(A)] += 3
    tally.seconds[tally.hit_id(A)] += 0.5
    text = metrics.render(metrics.registry(
        lambda: metrics.snapshot(stats, "dns://test", ["skydns.test."]))).decode()
    lines = [line for line in text.splitlines() if 'zone="skydns.test."' in line]
    assert any(line.startswith("coredns_dns_requests_total{") and line.endswith(" 5.0")
               for line in lines), lines
    assert any(line.startswith("coredns_dns_request_duration_seconds_sum{")
               and line.endswith(" 0.5") for line in lines), lines
