"""Counting queries on the hot path with plain lists; ``metrics`` exports them.

One ``Stat`` describes a reply well enough for every ``coredns_dns_*`` series: its exact
request and response sizes, so histogram sums are exact too. Each distinct Stat gets a
small integer id; cached replies carry theirs, so a cache hit costs two list updates (a
count and its measured seconds) and no hashing. A hit is counted in the first duration
bucket (0.25 ms): it takes about a microsecond; its measured time still goes into the sum.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import NamedTuple

# CoreDNS's plugin.TimeBuckets: 0.25 ms doubling 16 times; and its size buckets.
DURATION_BUCKETS = tuple(0.00025 * 2**i for i in range(16))
SIZE_BUCKETS = (0, 100, 200, 300, 400, 511, 1023, 2047, 4095, 8291, 16e3, 32e3, 48e3, 64e3)

class Stat(NamedTuple):
    proto: str  # "udp" / "tcp"
    zone: str  # the matched zone with a trailing dot, or "dropped"
    qtype: str  # mnemonic, or "other"
    rcode: str
    do: bool
    plugin: str  # which step answered: "etcd", "forward", "cache", ""
    request_size: int
    response_size: int
    duration_bucket: int


StatFields = tuple[str, str, str, str, bool, str, int, int, int]  # a Stat as a plain tuple

# The kinds of answer-cache hit: one the forward cache does not count (our answers); a
# forwarded reply it holds as an answer (``coredns_cache_hits_total{type="success"}``) or
# as a denial.
PLAIN, FORWARDED, DENIED = 0, 1, 2


class Tally:
    """Counts and total seconds per distinct Stat."""

    def __init__(self) -> None:
        self.ids: dict[StatFields, int] = {}
        self.stats: list[Stat] = []
        self.counts: list[int] = []
        self.seconds: list[float] = []
        # The answer cache's hits have ids apart from the replies they repeat (same Stat,
        # two rows: the metrics add them up), one per kind of hit, so that ``hits`` can
        # sum them: a hit then costs no counter of its own.
        self.hit_ids: dict[tuple[Stat, int], int] = {}

    def id(self, stat: Stat) -> int:
        i = self.ids.get(stat)
        if i is None:
            i = self.ids[stat] = self._new(stat)
        return i

    def hit_id(self, stat: Stat, kind: int = PLAIN) -> int:
        """The id to count answer-cache hits like ``stat``, of a ``kind``, under."""
        i = self.hit_ids.get((stat, kind))
        if i is None:
            i = self.hit_ids[(stat, kind)] = self._new(stat)
        return i

    def _new(self, stat: Stat) -> int:
        self.stats.append(stat)
        self.counts.append(0)
        self.seconds.append(0.0)
        return len(self.stats) - 1

    def hits(self, *kinds: int) -> int:
        """Replies served from the answer cache: of the ``kinds`` given, or all."""
        counts = self.counts
        return sum(counts[i] for (_, kind), i in self.hit_ids.items()
                   if not kinds or kind in kinds)

    def add(self, fields: StatFields, seconds: float) -> int:
        """Count one reply. A plain tuple hashes and compares like its Stat, and is cheaper
        to build per query; the Stat itself is made once per distinct value."""
        i = self.ids.get(fields)
        if i is None:
            i = self.id(Stat(*fields))
        self.counts[i] += 1
        self.seconds[i] += seconds
        return i

    def rows(self) -> list[list[object]]:
        return [[*stat, n, t] for stat, n, t in zip(self.stats, self.counts, self.seconds,
                                                     strict=True) if n]

    def total(self, **match: object) -> int:
        """Sum of the counts whose Stat fields equal ``match`` (for tests and logs)."""
        return sum(n for stat, n in zip(self.stats, self.counts, strict=True)
                   if all(getattr(stat, k) == v for k, v in match.items()))


def size_bucket(size: int) -> int:
    return bisect_left(SIZE_BUCKETS, size)


def duration_bucket(seconds: float) -> int:
    return bisect_left(DURATION_BUCKETS, seconds)
