"""Stage 1, the answer cache: rendered replies, keyed by the raw query minus its ID.

Contract: a hit returns exactly the bytes an uncached pass would have produced, with the
client's ID; it never parses the query. It is exact for our zones: every entry records
the index paths its answer was read from, and a change at or below one of them drops it.
The SOA serial (the etcd revision served) is spliced in at send time, so a cached negative
answer carries the current serial. Forwarded replies are kept until their TTLs would
tick down a second, then re-aged in place while the forward cache still holds them.
Multi-record answers are kept in several rotations, served in turn. It is bounded by
entries and by bytes (the replies, their keys and a fixed estimate of the bookkeeping per
entry). When either is reached, answers that find it full are not kept; once it has been
full for ``REFILL_PERIOD`` seconds it starts again empty (cheaper than tracking recency per
hit). So a working set a little larger than the cache (every name of a zone asked in
turn) keeps most of itself cached instead of emptying the cache over and over, and a
working set that moves on is picked up within the period.

Admission: answers the general path renders (~30 µs) are kept at once. Answers the direct
stage makes in a few microseconds are kept only on their query's second sighting: a flood
of names that never repeat then costs no insertions and cannot empty the cache. The
doorkeeper is a Bloom filter (two bits a query, from the two halves of its hash, in 16
million bits: 2 MiB, no object per query) that starts again blank after twice the cache's
capacity of first sightings (at most ``MAX_WINDOW``), so a name that comes back within
that many new queries is admitted (a zone-wide mix the cache can hold is cached); a false
positive (under 0.1% at the default capacity) only admits an answer early.
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

REFILL_PERIOD = 60.0  # seconds a cache stays full before it starts again empty
DOORKEEPER_BITS = 1 << 24
MAX_WINDOW = 1_000_000  # first sightings remembered at most (1.4% false positives then)
ENTRY_OVERHEAD = 600  # bytes per entry besides reply and key (objects, dict slots, deps), measured


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
    def __init__(self, capacity: int, stats: Stats, max_bytes: int) -> None:
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.stats = stats
        # The tally's lists, held directly: a hit updates them with no attribute walk.
        self._counts, self._seconds = stats.tally.counts, stats.tally.seconds
        self.serial = b"\0\0\0\0"  # the SOA serial served, as it goes on the wire
        self._turn = 0
        self._bytes = 0
        self._full_since: float | None = None  # when it was first found full (monotonic)
        self._cache: dict[CacheKey, CachedAnswer] = {}
        # path -> the keys of the answers read from it: one key alone (nearly always: a
        # set costs ~200 bytes an entry), or a set of them.
        self._deps: dict[Labels, CacheKey | set[CacheKey]] = {}
        self._window = min(MAX_WINDOW, 2 * max(1, capacity))  # the doorkeeper's memory
        self._seen = bytearray(DOORKEEPER_BITS // 8)
        self._marks = 0
        self._hit_ids: dict[tuple[int, str | None], int] = {}  # a reply's Stat -> its hit's

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
        reply = data[:2] + head if tail is None else data[:2] + head + self.serial + tail
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
            self.keep_ours(req.data, req.tcp, [v.wire for v in variants], at, stat_id, deps,
                           expires)
        return first if at < 0 else first[:at] + self.serial + first[at + 4 :]

    def keep_ours(self, data: bytes, tcp: bool, variants: list[bytes], serial_at: int,
                  stat_id: int, deps: set[Labels], expires: float = 0.0) -> None:
        """Keep one of our answers (its rotations, or one reply with an SOA serial at
        ``serial_at``), dropped when etcd changes a path in ``deps``."""
        if serial_at >= 0:
            first = variants[0]
            heads: tuple[bytes, ...] = (first[2:serial_at],)
            tail: bytes | None = first[serial_at + 4 :]
        else:
            heads, tail = tuple(v[2:] for v in variants), None
        entry = CachedAnswer(heads, tail, expires, self._hit_stat(stat_id))
        self._store((tcp, data[2:]), entry, deps)

    def seen_before(self, data: bytes, tcp: bool) -> bool:
        """The doorkeeper: whether this query (minus its ID) came recently and found the
        cache without it. The first time it only remembers it."""
        h = hash((tcp, data[2:]))
        a, b = h & (DOORKEEPER_BITS - 1), (h >> 32) & (DOORKEEPER_BITS - 1)
        seen = self._seen
        if seen[a >> 3] >> (a & 7) & 1 and seen[b >> 3] >> (b & 7) & 1:
            return True
        if self._marks >= self._window:
            self._seen = seen = bytearray(len(seen))
            self._marks = 0
        seen[a >> 3] |= 1 << (a & 7)
        seen[b >> 3] |= 1 << (b & 7)
        self._marks += 1
        return False

    def admits(self) -> bool:
        """Whether an answer would be kept now: there is room, or the cache has been full
        long enough to start again. The direct stage asks before it builds an entry."""
        return self._fits(2 * ENTRY_OVERHEAD) or self._refill_due()

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
        hit = self._hit_ids.get((stat_id, plugin))
        if hit is None:
            tally = self.stats.tally
            stat = tally.stats[stat_id]._replace(duration_bucket=0)
            hit = tally.id(stat if plugin is None else stat._replace(plugin=plugin))
            self._hit_ids[(stat_id, plugin)] = hit
        return hit

    def _store(self, key: CacheKey, entry: CachedAnswer, deps: set[Labels] | tuple[()]) -> None:
        size = _size(key, entry)
        if not self._fits(size):
            if not self._refill_due():
                return  # full, not for long: this one is not kept
            self.clear()
        old = self._cache.get(key)
        if old is not None:
            self._bytes -= _size(key, old)
        self._cache[key] = entry
        self._bytes += size
        deps_map = self._deps
        for path in deps:
            keys = deps_map.get(path)
            if keys is None:
                deps_map[path] = key
            elif isinstance(keys, set):
                keys.add(key)
            elif keys != key:
                deps_map[path] = {keys, key}

    def _fits(self, size: int) -> bool:
        return len(self._cache) < self.capacity and self._bytes + size <= self.max_bytes

    def _refill_due(self) -> bool:
        """Asked of a full cache: whether it has been full for ``REFILL_PERIOD`` (the first
        time it is found full starts that period)."""
        now = time.monotonic()
        if self._full_since is None:
            self._full_since = now
        return now - self._full_since >= REFILL_PERIOD

    def clear(self) -> None:
        self._cache.clear()
        self._deps.clear()
        self._bytes = 0
        self._full_since = None

    @property
    def size_bytes(self) -> int:
        """The estimated bytes held (``max_bytes`` bounds it)."""
        return self._bytes

    def invalidate(self, path: Labels) -> None:
        """Drop every answer read from ``path`` or from any node above it."""
        for depth in range(len(path) + 1):
            keys = self._deps.pop(path[:depth], None)
            if keys is not None:
                for key in (keys if isinstance(keys, set) else (keys,)):
                    entry = self._cache.pop(key, None)
                    if entry is not None:
                        self._bytes -= _size(key, entry)

    def set_revision(self, revision: int) -> None:
        self.serial = (revision & 0xFFFFFFFF).to_bytes(4, "big")


def _size(key: CacheKey, entry: CachedAnswer) -> int:
    """What an entry counts against ``max_bytes``."""
    tail = len(entry.tail) if entry.tail is not None else 0
    return ENTRY_OVERHEAD + len(key[1]) + sum(map(len, entry.heads)) + tail


def _renewed(entry: CachedAnswer) -> bool:
    """A kept forwarded reply whose TTLs ticked: re-aged in place while the forward cache
    still serves it (else False, and the query takes the full path)."""
    aging = entry.aging
    fresh = aging.renew(entry.heads, time.monotonic()) if aging is not None else None
    if fresh is None:
        return False
    entry.heads, entry.expires = fresh
    return True
