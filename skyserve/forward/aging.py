"""A relayed reply kept as bytes in the answer cache, its TTLs lowered in place as it ages.

The answer cache keeps a relayed reply until its TTLs would tick down a second. Rendering
it again from the forward cache then costs a trip down the whole query path (parse, zone
lookup, forwarder, ``relay``) for a name asked a few times a second; instead ``Aging``
patches the TTL fields of the kept bytes: each TTL relay wrote is
``max(0, min(record TTL, entry TTL) - age)``, so lowering it by the seconds passed (never
below 0) gives exactly the bytes ``relay`` would give now.

It gives up (the query then takes the full path) when the forward cache's entry has
expired, was replaced or evicted, or is due for prefetch: the full path is what refreshes
it.
"""

from __future__ import annotations

from ..wire.constants import TTL
from ..wire.response import parse_response
from .cache import CachedResponse, ForwardCache, Key

Heads = bytes | tuple[bytes, ...]  # a reply after its ID, or one per rotation


def ttl_offsets(reply: bytes) -> tuple[int, ...]:
    """Where a relayed reply holds its TTLs (the OPT's is not one), counted after the ID."""
    return tuple(s.ttl_at - 2 for s in parse_response(reply).spans)


class Aging:
    """The forward-cache entry behind kept reply bytes, and the age they were written at."""

    __slots__ = ("age", "cache", "entry", "key", "offsets")

    def __init__(self, cache: ForwardCache, key: Key, entry: CachedResponse, age: int,
                 offsets: tuple[tuple[int, ...], ...]) -> None:
        self.cache, self.key, self.entry = cache, key, entry
        self.age = age
        self.offsets = offsets  # per rotation: its TTLs' places

    def renew(self, heads: Heads, now: float) -> tuple[Heads, float] | None:
        """``heads`` re-aged to ``now``, and until when they stay right; None: render anew."""
        entry = self.entry
        if not self.cache.serves(self.key, entry, now):
            return None
        age = int(now - entry.stored)
        passed = age - self.age
        if passed > 0:
            self.age = age
            if isinstance(heads, bytes):
                heads = _lowered(heads, self.offsets[0], passed)
            else:
                heads = tuple(_lowered(head, at, passed)
                              for head, at in zip(heads, self.offsets, strict=True))
        return heads, ticks_at(entry.expires, entry.stored, age)


def ticks_at(expires: float, stored: float, age: int) -> float:
    """Until when reply bytes written at ``age`` seconds are right: their TTLs tick down a
    second later, or the entry expires (monotonic)."""
    return min(expires, stored + age + 1)


def _lowered(head: bytes, offsets: tuple[int, ...], seconds: int) -> bytes:
    out = bytearray(head)
    unpack, pack = TTL.unpack_from, TTL.pack_into
    for at in offsets:
        pack(out, at, max(0, unpack(out, at)[0] - seconds))
    return bytes(out)
