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
doorkeeper is a Bloom filter (two bits a query, from the two halves of the hash the direct
stage gives it, in 64 bits a remembered query up to 16 million bits: 2 MiB, no object per
query) that starts again blank after twice the cache's capacity of first sightings (at most
``MAX_WINDOW``), so a name that comes back within that many new queries is admitted (a
zone-wide mix the cache can hold is cached); a false positive (under 0.1% at the default
capacity) only admits an answer early.

Sampling: the doorkeeper is a fifth of a first-time answer's cost in-process (0.5-0.7 µs:
two cold probes and a dozen bytecodes), and under a flood of new names, or a zone-wide mix
larger than it remembers, it admits nothing anyway. So when a window ends in which fewer
than one sighting in ``OFFER_EVERY`` was a repeat, the next window offers it only one
first-time answer in ``OFFER_EVERY``, drawn at random by the direct stage (a draw by
position or by name could fall in step with a client's cycle of names and never offer some
of them). A name that keeps coming back is then admitted after about ``2 * OFFER_EVERY``
sightings instead of two. A sampling window is ``OFFER_EVERY`` times fewer marks, so it
spans about as many first-time answers as a full one; a window whose sightings repeat
again turns sampling off.
"""

from __future__ import annotations

import time

from skydns.record import Labels

from ..forward.aging import Aging
from ..forward.cache import CachedResponse
from ..stats import Stats
from ..tally import DENIED, FORWARDED, PLAIN
from ..wire.render import Rendered
from .request import Request

Head = bytes | tuple[bytes, ...]  # a reply after its ID; a tuple: one per rotation

REFILL_PERIOD = 60.0  # seconds a cache stays full before it starts again empty
MAX_DOORKEEPER_BITS = 1 << 24
MAX_WINDOW = 1_000_000  # first sightings remembered at most (1.4% false positives then)
OFFER_EVERY = 8  # while sampling, one first-time answer in this many meets the doorkeeper
# Bytes an entry costs besides its reply and key: its object, the bytes objects' headers,
# dict slots, a hash in the deps map. Measured with tracemalloc (one A record or NXDOMAIN
# a name, direct answers: 353 bytes an entry in all, 85 of them reply and key).
ENTRY_OVERHEAD = 270
TUPLE_OVERHEAD = 100  # more for a head kept as a tuple (rotations; counted forwarded replies)
_clock = time.perf_counter  # module globals: one lookup less on the hot path
_monotonic = time.monotonic


class CachedAnswer:
    """One of our answers, kept. Four slots and, nearly always, one bytes object: an
    entry's Python objects cost more than its reply (see ``ENTRY_OVERHEAD``)."""

    __slots__ = ("expires", "head", "stat", "tail")

    def __init__(self, head: Head, tail: bytes | None, expires: float, stat: int) -> None:
        self.head = head  # the reply after its ID, up to the SOA serial if it has one
        self.tail = tail  # the reply after the serial, or None when it has no SOA
        self.expires = expires  # 0.0: until etcd changes it
        self.stat = stat  # its Tally id


class Relayed(CachedAnswer):
    """A forwarded reply, kept until its TTLs tick down (``expires``), then re-aged by
    ``aging``. Its head is one bytes object, as one of ours, so that a hit on it costs
    what one on ours does but for the expiry check; a tuple only for rotations, or when
    the forward cache counts the entry's hits (``source``: for prefetch)."""

    __slots__ = ("aging", "source")

    def __init__(self, heads: tuple[bytes, ...], expires: float, stat: int,
                 aging: Aging | None) -> None:
        source = aging.entry if aging is not None and aging.cache.settings.prefetch else None
        super().__init__(heads[0] if len(heads) == 1 and source is None else heads, None,
                         expires, stat)
        self.source: CachedResponse | None = source  # the forward cache's entry to count
        self.aging = aging  # how to re-age it when ``expires`` passes


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
        # Keyed by the query without its ID (no key object of its own), one dict per
        # transport: a UDP reply may be truncated where the TCP one is not.
        self._udp: dict[bytes, CachedAnswer] = {}
        self._tcp: dict[bytes, CachedAnswer] = {}
        # hash(path) -> the queries whose answers were read from it: one alone (nearly
        # always: a set costs ~200 bytes), or a set of them. The hash, not the path: a
        # path's tuple and label strings would cost ~230 bytes an entry, and two paths with
        # the same hash only drop each other's answers early. An invalidation drops the
        # query's answer over both transports: both were read from the same paths.
        self._deps: dict[int, bytes | set[bytes]] = {}
        self._window = min(MAX_WINDOW, 2 * max(1, capacity))  # the doorkeeper's memory
        # 64 bits a remembered query (under 0.1% false positives), at most 16 million (2 MiB)
        self._mask = min(MAX_DOORKEEPER_BITS, 1 << (64 * self._window - 1).bit_length()) - 1
        self._seen = bytearray((self._mask + 1) // 8)
        self._marks = 0
        self._limit = self._window  # marks before it starts again blank
        self._repeats = 0  # sightings it recognised since then
        self.sampling = False  # whether the direct stage offers it only some answers
        self._hit_ids: dict[tuple[int, str | None, int], int] = {}  # a reply's Stat -> its hit's

    def hit(self, data: bytes, tcp: bool, start: float) -> bytes | None:
        """The reply to a query seen before, or None. The hot path, kept to as few steps
        as can be: an entry that expires (a forwarded reply) reads the clock, one with
        rotations takes ``_rotation``; the common one (one reply, kept until etcd changes
        it) neither."""
        entry = (self._tcp if tcp else self._udp).get(data[2:])
        if entry is None:
            return None
        if entry.expires and entry.expires <= _monotonic() and not _renewed(entry):
            return None  # its TTLs ticked down and the forward cache no longer serves it
        head = entry.head
        if isinstance(head, tuple):
            head = self._rotation(entry, head)
        tail = entry.tail
        reply = data[:2] + head if tail is None else data[:2] + head + self.serial + tail
        i = entry.stat
        self._counts[i] += 1
        self._seconds[i] += _clock() - start
        return reply

    def _rotation(self, entry: CachedAnswer, heads: tuple[bytes, ...]) -> bytes:
        """The reply to send (after its ID) of an entry kept as a tuple: its rotations in
        turn; a forwarded reply's hit counted in the forward cache's entry too."""
        if isinstance(entry, Relayed) and entry.source is not None:
            entry.source.hits += 1
        if len(heads) == 1:
            return heads[0]
        self._turn += 1
        return heads[self._turn % len(heads)]

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
        first = variants[0]
        head: Head
        if serial_at >= 0:
            head, tail = first[2:serial_at], first[serial_at + 4 :]
        else:
            head = first[2:] if len(variants) == 1 else tuple(v[2:] for v in variants)
            tail = None
        entry = CachedAnswer(head, tail, expires, self._hit_stat(stat_id))
        self._store(data[2:], tcp, entry, deps)

    def seen_before(self, mark: int) -> bool:
        """The doorkeeper: whether a query with this ``mark`` (a hash of it, from the
        direct stage) came recently and found the cache without it. The first time it
        only remembers it."""
        a, b = mark & self._mask, (mark >> 32) & self._mask
        seen = self._seen
        if seen[a >> 3] >> (a & 7) & 1 and seen[b >> 3] >> (b & 7) & 1:
            self._repeats += 1
            return True
        if self._marks >= self._limit:
            seen = self._new_window()
        seen[a >> 3] |= 1 << (a & 7)
        seen[b >> 3] |= 1 << (b & 7)
        self._marks += 1
        return False

    def _new_window(self) -> bytearray:
        """Start the doorkeeper again blank, sampling in the next window if fewer than
        one sighting in ``OFFER_EVERY`` of the one ending was a repeat."""
        self.sampling = self._repeats * OFFER_EVERY < self._marks
        self._limit = max(1, self._window // OFFER_EVERY) if self.sampling else self._window
        self._seen = bytearray(len(self._seen))
        self._marks = self._repeats = 0
        return self._seen

    def admits(self) -> bool:
        """Whether an answer would be kept now: there is room, or the cache has been full
        long enough to start again. The direct stage asks before it builds an entry."""
        return self._fits(2 * ENTRY_OVERHEAD) or self._refill_due()

    def keep_forwarded(self, req: Request, variants: list[bytes], stat_id: int, until: float,
                       aging: Aging | None) -> None:
        """Keep a relayed upstream reply until ``until`` (monotonic), and then for as long
        as ``aging`` (None: no forward cache entry behind it) can re-age it. Its hits
        count as the forward cache's (``coredns_cache_hits_total``) under hit ids of
        their kind."""
        kind = PLAIN if aging is None else DENIED if aging.entry.denial else FORWARDED
        hit = self._hit_stat(stat_id, "cache", kind)
        entry = Relayed(tuple(v[2:] for v in variants), until, hit, aging)
        self._store(req.data[2:], req.tcp, entry, ())

    def _hit_stat(self, stat_id: int, plugin: str | None = None, kind: int = PLAIN) -> int:
        """A hit is counted like the reply it repeats, in the first duration bucket."""
        hit = self._hit_ids.get((stat_id, plugin, kind))
        if hit is None:
            tally = self.stats.tally
            stat = tally.stats[stat_id]._replace(duration_bucket=0)
            hit = tally.hit_id(stat if plugin is None else stat._replace(plugin=plugin), kind)
            self._hit_ids[(stat_id, plugin, kind)] = hit
        return hit

    def _store(self, query: bytes, tcp: bool, entry: CachedAnswer,
               deps: set[Labels] | tuple[()]) -> None:
        size = _size(query, entry)
        if not self._fits(size):
            if not self._refill_due():
                return  # full, not for long: this one is not kept
            self.clear()
        cache = self._tcp if tcp else self._udp
        old = cache.get(query)
        if old is not None:
            self._bytes -= _size(query, old)
        cache[query] = entry
        self._bytes += size
        deps_map = self._deps
        for path in deps:
            h = hash(path)
            queries = deps_map.get(h)
            if queries is None:
                deps_map[h] = query
            elif isinstance(queries, set):
                queries.add(query)
            elif queries != query:
                deps_map[h] = {queries, query}

    def _fits(self, size: int) -> bool:
        return (len(self._udp) + len(self._tcp) < self.capacity
                and self._bytes + size <= self.max_bytes)

    def _refill_due(self) -> bool:
        """Asked of a full cache: whether it has been full for ``REFILL_PERIOD`` (the first
        time it is found full starts that period)."""
        now = time.monotonic()
        if self._full_since is None:
            self._full_since = now
        return now - self._full_since >= REFILL_PERIOD

    def clear(self) -> None:
        self._udp.clear()
        self._tcp.clear()
        self._deps.clear()
        self._bytes = 0
        self._full_since = None

    def get(self, data: bytes, tcp: bool) -> CachedAnswer | None:
        """The entry kept for a query (with its ID), if any: for tests and probes."""
        return (self._tcp if tcp else self._udp).get(data[2:])

    def __len__(self) -> int:
        return len(self._udp) + len(self._tcp)

    @property
    def size_bytes(self) -> int:
        """The estimated bytes held (``max_bytes`` bounds it)."""
        return self._bytes

    def invalidate(self, path: Labels) -> None:
        """Drop every answer read from ``path`` or from any node above it."""
        if not self._deps:
            return  # nothing kept of ours (a load, or a bulk write, into a quiet cache)
        for depth in range(len(path) + 1):
            queries = self._deps.pop(hash(path[:depth]), None)
            if queries is not None:
                for query in (queries if isinstance(queries, set) else (queries,)):
                    self._drop(query, self._udp)
                    self._drop(query, self._tcp)

    def _drop(self, query: bytes, cache: dict[bytes, CachedAnswer]) -> None:
        entry = cache.pop(query, None)
        if entry is not None:
            self._bytes -= _size(query, entry)

    def set_revision(self, revision: int) -> None:
        self.serial = (revision & 0xFFFFFFFF).to_bytes(4, "big")


def _size(query: bytes, entry: CachedAnswer) -> int:
    """What an entry counts against ``max_bytes``."""
    head = entry.head
    held = len(head) if isinstance(head, bytes) else TUPLE_OVERHEAD + sum(map(len, head))
    tail = len(entry.tail) if entry.tail is not None else 0
    return ENTRY_OVERHEAD + len(query) + held + tail


def _renewed(entry: CachedAnswer) -> bool:
    """A kept forwarded reply whose TTLs ticked: re-aged in place while the forward cache
    still serves it (else False, and the query takes the full path)."""
    if not isinstance(entry, Relayed) or entry.aging is None:
        return False
    fresh = entry.aging.renew(entry.head, time.monotonic())
    if fresh is None:
        return False
    entry.head, entry.expires = fresh
    return True
