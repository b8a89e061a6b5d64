"""The answer cache's own bookkeeping: what an entry is counted as, the doorkeeper's size,
and that a change drops a query's answers over both transports."""

from __future__ import annotations

import itertools
import sys

import dns.message

from skyserve.pipeline.answers import ENTRY_OVERHEAD, OFFER_EVERY, AnswerCache
from skyserve.stats import Stats

QUERY = dns.message.make_query("a.skydns.test", "A").to_wire()
REPLY = QUERY[:2] + b"\x84\x00" + QUERY[4:] + b"\xc0\x0c" + b"\x00" * 14  # the shape only


def cache(capacity: int = 100, max_bytes: int = 1 << 20) -> tuple[AnswerCache, int]:
    stats = Stats()
    stat = stats.tally.add(("udp", "skydns.test.", "A", "NOERROR", False, "etcd", 40, 60, 0),
                           0.0)
    return AnswerCache(capacity, stats, max_bytes), stat


def test_an_answer_is_counted_as_its_bytes_and_the_measured_overhead() -> None:
    answers, stat = cache()
    answers.keep_ours(QUERY, False, [REPLY], -1, stat, {("test", "skydns", "a")})
    assert answers.size_bytes == ENTRY_OVERHEAD + len(QUERY) - 2 + len(REPLY) - 2
    entry = answers.get(QUERY, False)
    assert entry is not None
    # One reply is kept as bytes, not in a tuple: the object and its head are all there is.
    assert isinstance(entry.head, bytes)
    assert sys.getsizeof(entry) <= 64


def test_the_doorkeeper_is_sized_to_what_it_remembers() -> None:
    assert len(cache(20_000)[0]._seen) <= 512 * 1024
    assert len(cache(1_000_000)[0]._seen) == 2 * 1024 * 1024  # its most


def test_the_doorkeeper_samples_while_sightings_do_not_repeat() -> None:
    """A window of new marks only turns sampling on, for a window ``OFFER_EVERY`` times
    shorter; one in which at least one sighting in ``OFFER_EVERY`` repeats turns it off."""
    answers, _ = cache(100)  # a window of 200 marks
    marks = (i << 32 | 3 * i for i in itertools.count(1))  # no two share both bits
    for _ in range(200):
        assert not answers.seen_before(next(marks))
    assert not answers.sampling  # decided when the next window starts
    assert not answers.seen_before(next(marks))
    assert answers.sampling
    again = [next(marks) for _ in range(200 // OFFER_EVERY - 2)]  # with the one above
    for mark in again:
        assert not answers.seen_before(mark)
    assert all(answers.seen_before(mark) for mark in again[:3])
    assert not answers.seen_before(next(marks))  # the window's last mark
    assert not answers.seen_before(next(marks))  # 3 repeats in 25 marks: too few
    assert answers.sampling
    for mark in [next(marks) for _ in range(24)]:
        assert not answers.seen_before(mark)
        assert answers.seen_before(mark)  # a repeat for every mark
    assert not answers.seen_before(next(marks))
    assert not answers.sampling
    for _ in range(198):
        answers.seen_before(next(marks))
    assert not answers.sampling  # a full window again: 200 marks


def test_a_change_drops_the_answer_over_udp_and_tcp() -> None:
    answers, stat = cache()
    path = ("test", "skydns", "a")
    for tcp in (False, True):
        answers.keep_ours(QUERY, tcp, [REPLY], -1, stat, {path})
    assert answers.hit(QUERY, True, 0.0) == REPLY
    assert len(answers) == 2
    answers.invalidate(("test", "skydns", "a", "x1"))  # a record below the name
    assert len(answers) == 0 and answers.size_bytes == 0
    assert answers.hit(QUERY, False, 0.0) is None and answers.hit(QUERY, True, 0.0) is None
