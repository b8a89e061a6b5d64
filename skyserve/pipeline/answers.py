"""Stage 1, the answer cache: rendered replies, keyed by the raw query minus its ID.

Contract: a hit returns exactly the bytes an uncached pass would have produced, with the
client's ID; it never parses the query. It is exact for our zones: every entry records
the index paths its answer was read from, and a change at or below one of them drops it.
The SOA serial (the etcd revision served) is spliced in at send time, so a cached negative
answer carries the current serial. Forwarded replies are kept until their TTLs would
tick down a second, then re-aged in place while the forward cache still holds them.
Multi-record answers are kept in several rotations, served in turn. When full, the cache
starts again empty (cheaper than tracking recency per hit).
"""

from __future__ import annotations

import time

from skydns.record import Labels

from ..forward.aging import Aging
from ..forward.cache import CachedResponse
from ..stats import Stats
from ..wire.render import Rendered
from .request import Request

CacheKey = tuple[bool, bytes]  # (tcp, query without its ID)


class CachedAnswer:
    __slots__ = ("aging", "denial", "expires", "heads", "source", "stat", "tail")

    def __init__(self, heads: tuple[bytes, ...], tail: bytes | None, expires: float,
                 stat: int, source: CachedResponse | None = None, denial: bool = False,
                 aging: Aging | None = None) -> None:
        self.heads = heads  # the reply after its ID, up to the SOA serial; one per rotation
        self.tail = tail  # the reply after the serial, or None when it has no SOA
        self.expires = expires  # 0.0: until etcd changes it
        self.stat = stat  # its Tally id
        self.source = source  # for forwarded replies: the forward cache's entry
        self.denial = denial
        self.aging = aging  # for forwarded replies: how to re-age them when ``expires`` passes


class AnswerCache:
    def __init__(self, capacity: int, stats: Stats) -> None:
        self.capacity = capacity
        self.stats = stats
        # The tally's lists, held directly: a hit updates them with no attribute walk.
        self._counts, self._seconds = stats.tally.counts, stats.tally.seconds
        self._serial = b"\0\0\0\0"
        self._turn = 0
        self._cache: dict[CacheKey, CachedAnswer] = {}
        self._deps: dict[Labels, set[CacheKey]] = {}

    def hit(self, data: bytes, tcp: bool, start: float) -> bytes | None:
        """The reply to a query seen before, or None. The hot path: keep it lean."""
        entry = self._cache.get((tcp, data[2:]))
        if entry is None or (entry.expires and entry.expires <= time.monotonic()
                             and not _renewed(entry)):
            return None
        stats = self.stats
        stats.answer_hits += 1
        heads = entry.heads
        if len(heads) == 1:
            head = heads[0]
        else:
            self._turn += 1
            head = heads[self._turn % len(heads)]
        tail = entry.tail
        reply = data[:2] + head if tail is None else data[:2] + head + self._serial + tail
        source = entry.source
        if source is not None:  # a forwarded reply: the forward cache's hit too
            source.hits += 1
            stats.forward_hits[entry.denial] += 1
        i = entry.stat
        self._counts[i] += 1
        self._seconds[i] += time.perf_counter() - start
        return reply

    def next_turn(self) -> int:
        """A counter for choosing among rotations of a fresh reply."""
        self._turn += 1
        return self._turn

    def serve_ours(self, req: Request, variants: list[Rendered], stat_id: int,
                   deps: set[Labels] | None, expires: float = 0.0) -> bytes:
        """The first rendering of one of our answers, with the current serial; kept (with
        the paths it depends on, until ``expires`` if set) unless ``deps`` is None."""
        first = variants[0].wire
        at = variants[0].serial_at
        if deps is not None:
            if at >= 0:
                heads: tuple[bytes, ...] = (first[2:at],)
                tail: bytes | None = first[at + 4 :]
            else:
                heads, tail = tuple(v.wire[2:] for v in variants), None
            entry = CachedAnswer(heads, tail, expires, self._hit_stat(stat_id))
            self._store((req.tcp, req.data[2:]), entry, deps)
        return first if at < 0 else first[:at] + self._serial + first[at + 4 :]

    def keep_forwarded(self, req: Request, variants: list[bytes], stat_id: int, until: float,
                       source: CachedResponse | None, aging: Aging | None = None) -> None:
        """Keep a relayed upstream reply until ``until`` (monotonic), and then for as long
        as ``aging`` can re-age it."""
        denial = source.denial if source is not None else False
        hit = self._hit_stat(stat_id, plugin="cache")
        entry = CachedAnswer(tuple(v[2:] for v in variants), None, until, hit, source, denial,
                             aging)
        self._store((req.tcp, req.data[2:]), entry, ())

    def _hit_stat(self, stat_id: int, plugin: str | None = None) -> int:
        """A hit is counted like the reply it repeats, in the first duration bucket."""
        tally = self.stats.tally
        stat = tally.stats[stat_id]._replace(duration_bucket=0)
        return tally.id(stat if plugin is None else stat._replace(plugin=plugin))

    def _store(self, key: CacheKey, entry: CachedAnswer, deps: set[Labels] | tuple[()]) -> None:
        if len(self._cache) >= self.capacity:
            self.clear()
        self._cache[key] = entry
        for path in deps:
            self._deps.setdefault(path, set()).add(key)

    def clear(self) -> None:
        self._cache.clear()
        self._deps.clear()

    def invalidate(self, path: Labels) -> None:
        """Drop every answer read from ``path`` or from any node above it."""
        for depth in range(len(path) + 1):
            keys = self._deps.pop(path[:depth], None)
            if keys:
                for key in keys:
                    self._cache.pop(key, None)

    def set_revision(self, revision: int) -> None:
        self._serial = (revision & 0xFFFFFFFF).to_bytes(4, "big")


def _renewed(entry: CachedAnswer) -> bool:
    """A kept forwarded reply whose TTLs ticked: re-aged in place while the forward cache
    still serves it (else False, and the query takes the full path)."""
    aging = entry.aging
    fresh = aging.renew(entry.heads, time.monotonic()) if aging is not None else None
    if fresh is None:
        return False
    entry.heads, entry.expires = fresh
    return True
