"""The forward cache: upstream replies kept for their TTLs (CoreDNS's ``cache`` plugin).

Entries are upstream replies, parsed once (``Response``) and re-addressed per client
with TTLs lowered by their age. Positive and negative entries live in separate LRU tables
with their own capacities and TTL caps; a negative entry's TTL follows RFC 2308 (the
smaller of the authority SOA's TTL and MINIMUM), and a negative reply without an SOA is not
cached. The key holds the lower-case name, type, class and the DO bit.

Expired entries are kept for ``stale`` seconds more so they can be served, with a 30 s TTL,
when every upstream fails (RFC 8767). An entry asked for at least ``prefetch`` times whose
remaining TTL has dropped below ``prefetch_percent`` of its original is reported for
prefetch, once, so the forwarder can refresh it before it expires.

Answers from our own zones are not cached here: the answer cache (``pipeline.answers``)
already holds them and is invalidated exactly by etcd changes, so they are never stale.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import NamedTuple

from skydns.record import Labels

from ..stats import CacheStats
from ..wire.constants import TC
from ..wire.response import Response, negative_ttl

STALE_TTL = 30  # RFC 8767 section 4


class Key(NamedTuple):
    labels: Labels
    qtype: int
    qclass: int
    do: bool


@dataclass(frozen=True, slots=True)
class CacheSettings:
    success_capacity: int = 9984  # CoreDNS's default
    denial_capacity: int = 9984
    success_ttl: int = 3600  # caps
    denial_ttl: int = 1800
    min_ttl: int = 5  # floor for both
    stale: float = 0.0  # seconds an expired entry may still be served; 0 = off
    prefetch: int = 0  # hits before prefetch is considered; 0 = off
    prefetch_percent: int = 10


class CachedResponse:
    __slots__ = ("denial", "expires", "hits", "prefetching", "response", "stored", "ttl")

    def __init__(self, response: Response, ttl: int, denial: bool, now: float) -> None:
        self.response = response
        self.ttl = ttl
        self.denial = denial
        self.stored = now
        self.expires = now + ttl
        self.hits = 0
        self.prefetching = False

    def age(self, now: float) -> int:
        return int(now - self.stored)


class ForwardCache:
    def __init__(self, settings: CacheSettings, stats: CacheStats | None = None) -> None:
        self.settings = settings
        self._success: OrderedDict[Key, CachedResponse] = OrderedDict()
        self._denial: OrderedDict[Key, CachedResponse] = OrderedDict()
        stats = stats if stats is not None else CacheStats()
        self.stats = stats.counters
        self._entries = stats.entries  # kept current, for the coredns_cache_entries gauge

    def __len__(self) -> int:
        return len(self._success) + len(self._denial)

    def sizes(self) -> dict[str, int]:
        return {"success": len(self._success), "denial": len(self._denial)}

    def _count_entries(self) -> None:
        self._entries["success"] = len(self._success)
        self._entries["denial"] = len(self._denial)

    def get(self, key: Key, now: float) -> tuple[CachedResponse | None, bool]:
        """(entry, fresh). A stale entry (within the stale window) comes back with False."""
        self.stats["requests"] += 1
        for table, kind in ((self._success, "success"), (self._denial, "denial")):
            entry = table.get(key)
            if entry is None:
                continue
            if now < entry.expires:
                table.move_to_end(key)
                entry.hits += 1
                self.stats[f"hits_{kind}"] += 1
                return entry, True
            if now < entry.expires + self.settings.stale:
                return entry, False
            del table[key]
            self._count_entries()
        self.stats["misses"] += 1
        return None, False

    def holds(self, key: Key, now: float) -> bool:
        """Whether ``get`` would find an entry to serve, fresh or stale (counts nothing)."""
        for table in (self._success, self._denial):
            entry = table.get(key)
            if entry is not None and now < entry.expires + self.settings.stale:
                return True
        return False

    def wants_prefetch(self, entry: CachedResponse, now: float) -> bool:
        if not self._prefetch_due(entry, now):
            return False
        entry.prefetching = True
        self.stats["prefetch"] += 1
        return True

    def _prefetch_due(self, entry: CachedResponse, now: float) -> bool:
        s = self.settings
        if not s.prefetch or entry.prefetching or entry.hits < s.prefetch:
            return False
        return (entry.expires - now) * 100 <= entry.ttl * s.prefetch_percent

    def serves(self, key: Key, entry: CachedResponse, now: float) -> bool:
        """Whether ``entry`` is still the fresh answer for ``key`` and not due for prefetch
        (which only ``get`` and the forwarder start); keeps it recently used."""
        table = self._denial if entry.denial else self._success
        if now >= entry.expires or table.get(key) is not entry or self._prefetch_due(entry, now):
            return False
        table.move_to_end(key)
        return True

    def put(self, key: Key, response: Response, now: float) -> CachedResponse | None:
        """Store a reply if it may be cached; returns the entry."""
        rcode = response.rcode
        if response.flags & TC:
            return None
        answers = [s for s in response.spans if s.section == 0]
        if rcode == 0 and answers:
            ttl = min(min(s.ttl for s in answers), self.settings.success_ttl)
            table, capacity, denial = self._success, self.settings.success_capacity, False
        elif rcode in (0, 3):  # NODATA or NXDOMAIN
            negative = negative_ttl(response)
            if negative is None:
                return None
            ttl = min(negative, self.settings.denial_ttl)
            table, capacity, denial = self._denial, self.settings.denial_capacity, True
        else:
            return None
        # A newer reply of the other kind (NXDOMAIN after an answer, or the reverse) wins.
        other = self._success if denial else self._denial
        other.pop(key, None)
        entry = None
        if capacity > 0:
            entry = CachedResponse(response, max(ttl, self.settings.min_ttl), denial, now)
            table[key] = entry
            table.move_to_end(key)
            while len(table) > capacity:
                table.popitem(last=False)
                self.stats[f"evictions_{'denial' if denial else 'success'}"] += 1
        else:
            table.pop(key, None)
        self._count_entries()
        return entry

    def served_stale(self) -> None:
        self.stats["served_stale"] += 1
