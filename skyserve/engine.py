"""The query path: raw query bytes in, raw reply bytes out. No sockets, no etcd.

Speed comes from answering repeated queries from rendered bytes. The cache is keyed by the
query as received minus its ID (so flags, case and EDNS options all take part), one table
for UDP and one for TCP since their size limits differ. It is exact, not time-based: every
entry records the index paths its answer was read from, and a change at or below one of
those paths drops it. The SOA serial (the etcd revision served) is spliced in at send time
so that a cached negative answer always carries the current serial.

Before the first complete load from etcd, names in our zones get SERVFAIL, never NXDOMAIN.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

from . import wire
from .lookup import NOERROR, NOTIMP, NXDOMAIN, REFUSED, SERVFAIL, Authority, Result, Settings, Zone
from .rr import CLASS_IN, RR, rrsets
from .skydns import Labels, Record
from .tree import Index

log = logging.getLogger(__name__)

CacheKey = tuple[bool, bytes]  # (tcp, query without its ID)


@dataclass(slots=True)
class Change:
    """One etcd event, decoded: a valid record, a rejected value, or a delete."""

    path: Labels
    key: str
    record: Record | None = None
    invalid: str | None = None  # the reason a value was rejected


class Engine:
    def __init__(
        self,
        zones: list[Zone],
        settings: Settings,
        *,
        max_udp: int = 1232,
        cache_entries: int = 100_000,
    ) -> None:
        self.authority = Authority(Index(), zones, settings)
        self.max_udp = max_udp
        self.cache_entries = cache_entries
        self.ready = False
        self.revision = 0
        self._serial = b"\0\0\0\0"
        self._cache: dict[CacheKey, tuple[bytes, bytes | None]] = {}
        self._deps: dict[Labels, set[CacheKey]] = {}
        self.stats: Counter[str] = Counter()

    # -- serving ---------------------------------------------------------------------

    def handle(self, data: bytes, tcp: bool = False) -> bytes | None:
        """Answer one query; None means send nothing."""
        entry = self._cache.get((tcp, data[2:]))
        if entry is not None:
            self.stats["cache_hits"] += 1
            head, tail = entry
            if tail is None:
                return data[:2] + head
            return data[:2] + head + self._serial + tail
        return self._answer(data, tcp)

    def _answer(self, data: bytes, tcp: bool) -> bytes | None:
        try:
            query = wire.parse_query(data)
        except wire.Drop:
            self.stats["dropped"] += 1
            return None
        except wire.FormatError as exc:
            self.stats["formerr"] += 1
            return exc.reply
        if query.opcode != 0:
            return self._render(query, NOTIMP, None, tcp).wire
        if query.edns and query.edns_version > 0:
            return self._render(query, wire.BADVERS, None, tcp).wire
        zone = self.authority.zone_of(query.labels) if query.qclass == CLASS_IN else None
        if zone is None:
            return self._render(query, REFUSED, None, tcp).wire
        if not self.ready:
            return self._render(query, SERVFAIL, None, tcp).wire
        result = self.authority.answer(query.labels, query.qtype, zone)
        rendered = self._render(query, result.rcode, result, tcp)
        if result.rcode in (NOERROR, NXDOMAIN):
            self._store((tcp, data[2:]), rendered, result.deps)
        if rendered.serial_at >= 0:
            at = rendered.serial_at
            return rendered.wire[:at] + self._serial + rendered.wire[at + 4 :]
        return rendered.wire

    def _render(
        self, query: wire.Query, rcode: int, result: Result | None, tcp: bool
    ) -> wire.Rendered:
        self.stats[f"rcode_{rcode}"] += 1
        sections: tuple[list[list[RR]], list[list[RR]], list[list[RR]]] = ([], [], [])
        if result is not None:
            sections = (rrsets(result.answer), rrsets(result.authority), rrsets(result.additional))
        return wire.render(
            query,
            rcode,
            sections,
            limit=wire.reply_limit(query, tcp, self.max_udp),
            aa=result is not None,
            ra=False,
            max_udp=self.max_udp,
        )

    def _store(self, key: CacheKey, rendered: wire.Rendered, deps: set[Labels]) -> None:
        if len(self._cache) >= self.cache_entries:
            self.clear_cache()
        at = rendered.serial_at
        if at >= 0:
            self._cache[key] = (rendered.wire[2:at], rendered.wire[at + 4 :])
        else:
            self._cache[key] = (rendered.wire[2:], None)
        for path in deps:
            self._deps.setdefault(path, set()).add(key)

    def clear_cache(self) -> None:
        self._cache.clear()
        self._deps.clear()

    # -- keeping in step with etcd ---------------------------------------------------

    def load(self, index: Index, revision: int) -> None:
        """Swap in a complete snapshot, all at once (start-up and after compaction)."""
        self.authority.index = index
        self.ready = True
        self.set_revision(revision)
        self.clear_cache()

    def apply(self, changes: list[Change], revision: int) -> None:
        """Apply watch events in order, dropping exactly the answers they may change."""
        index = self.authority.index
        for change in changes:
            if change.record is not None:
                index.put(change.path, change.record)
            elif change.invalid is not None:
                index.put_invalid(change.path, change.key, change.invalid)
            else:
                index.delete(change.path, change.key)
            self._invalidate(change.path)
        self.set_revision(revision)

    def set_revision(self, revision: int) -> None:
        self.revision = revision
        self._serial = (revision & 0xFFFFFFFF).to_bytes(4, "big")

    def _invalidate(self, path: Labels) -> None:
        for depth in range(len(path) + 1):
            keys = self._deps.pop(path[:depth], None)
            if keys:
                for key in keys:
                    self._cache.pop(key, None)
