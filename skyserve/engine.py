"""The query path: raw query bytes in, raw reply bytes out. No sockets, no etcd.

The steps, in order (each documented where it lives):

1. the answer cache: rendered replies keyed by the query minus its ID;
2. parse (``wire``): malformed -> FORMERR or dropped; opcode -> NOTIMP; EDNS version -> BADVERS;
3. our zones (``lookup``): SERVFAIL until the first etcd load, then authoritative answers,
   with CNAMEs that leave our zones completed through the forwarder; in a ``fallthrough``
   zone a name we do not have is forwarded instead of answered NXDOMAIN;
4. everything else (``forward``, with its TTL cache): or REFUSED when no upstream covers it.

The answer cache is exact for our zones: every entry records the index paths its answer
was read from, and a change at or below one of them drops it. The SOA serial (the etcd
revision served) is spliced in at send time, so a cached negative answer carries the
current serial. Forwarded replies are kept only until their TTLs tick down a second.
Multi-record A/AAAA/MX/SRV answers are kept in several rotations, served in turn, so that
clients spread their load.

Before the first complete load from etcd, names in our zones get SERVFAIL, never NXDOMAIN.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from skydns.record import Labels, Record

from . import rr as T
from . import wire
from .cache import Entry as CachedReply
from .forward import Forwarder, Outcome, Pool
from .lookup import NOERROR, NOTIMP, NXDOMAIN, REFUSED, SERVFAIL, Authority, Result, Settings, Zone
from .querylog import QueryLog
from .rr import CLASS_IN, RR, rrsets
from .tally import Tally, duration_bucket, qtype_name, rcode_name
from .tree import Index

log = logging.getLogger(__name__)

CacheKey = tuple[bool, bytes]  # (tcp, query without its ID)
Send = Callable[[bytes, Any], None]
ROTATE = (T.A, T.AAAA, T.MX, T.SRV)
MAX_ROTATIONS = 8


class Entry:
    __slots__ = ("denial", "expires", "heads", "source", "stat", "tail")

    def __init__(self, heads: tuple[bytes, ...], tail: bytes | None, expires: float,
                 stat: int, source: CachedReply | None = None, denial: bool = False) -> None:
        self.heads = heads  # the reply after its ID, up to the SOA serial; one per rotation
        self.tail = tail  # the reply after the serial, or None when it has no SOA
        self.expires = expires  # 0.0: until etcd changes it
        self.stat = stat  # its Tally id
        self.source = source  # for forwarded replies: the response-cache entry
        self.denial = denial


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
        forwarder: Forwarder | None = None,
        fallthrough: frozenset[Zone] = frozenset(),
        shuffle: bool = True,
        querylog: QueryLog | None = None,
    ) -> None:
        self.authority = Authority(Index(), zones, settings)
        self.max_udp = max_udp
        self.cache_entries = cache_entries
        self.forwarder = forwarder
        self.fallthrough = fallthrough
        self.shuffle = shuffle
        self.querylog = querylog
        self.ready = False
        self.revision = 0
        self.tally = Tally()
        self.hits = 0  # replies served from the answer cache
        self.forward_hits = [0, 0]  # of those, forwarded replies: [success, denial]
        self.stats: Counter[str] = Counter()
        self._serial = b"\0\0\0\0"
        self._turn = 0
        self._cache: dict[CacheKey, Entry] = {}
        self._deps: dict[Labels, set[CacheKey]] = {}

    # -- serving ---------------------------------------------------------------------

    def handle(self, data: bytes, tcp: bool = False, peer: Any = None,
               send: Send | None = None) -> bytes | None:
        """Answer one query: the reply, or None (dropped, or sent later through ``send``)."""
        start = time.perf_counter()
        entry = self._cache.get((tcp, data[2:]))
        if entry is not None and (not entry.expires or entry.expires > time.monotonic()):
            self.hits += 1
            heads = entry.heads
            if len(heads) == 1:
                head = heads[0]
            else:
                self._turn += 1
                head = heads[self._turn % len(heads)]
            tail = entry.tail
            reply = data[:2] + head if tail is None else data[:2] + head + self._serial + tail
            source = entry.source
            if source is not None:  # a forwarded reply: the response cache's hit too
                source.hits += 1
                self.forward_hits[entry.denial] += 1
            if self.querylog is not None:
                self.querylog.log(data, reply, peer, tcp, 0.0)
            i = entry.stat
            self.tally.counts[i] += 1
            self.tally.seconds[i] += time.perf_counter() - start
            return reply
        return self._answer(data, tcp, peer, send, start)

    def _answer(self, data: bytes, tcp: bool, peer: Any, send: Send | None,
                start: float) -> bytes | None:
        try:
            query = wire.parse_query(data)
        except wire.Drop:
            self.stats["dropped"] += 1
            return None
        except wire.FormatError as exc:
            self.stats["formerr"] += 1
            return exc.reply
        reply = self._dispatch(query, data, tcp, peer, send, start)
        if reply is not None and self.querylog is not None:
            self.querylog.log(data, reply, peer, tcp, time.perf_counter() - start)
        return reply

    def _dispatch(self, query: wire.Query, data: bytes, tcp: bool, peer: Any,
                  send: Send | None, start: float) -> bytes | None:
        if query.opcode != 0:
            return self._error(query, data, NOTIMP, tcp, "dropped", start)
        if query.edns and query.edns_version > 0:
            return self._error(query, data, wire.BADVERS, tcp, "dropped", start)
        fwd = self.forwarder
        if fwd is not None and fwd.probes and fwd.probe_seen(query.labels):
            return self._error(query, data, REFUSED, tcp, "dropped", start)
        zone = self.authority.zone_of(query.labels) if query.qclass == CLASS_IN else None
        if zone is None:
            pool = fwd.pool_for(query.labels) if fwd is not None else None
            if pool is not None and send is not None:
                self._forward(query, data, tcp, peer, send, start, pool)
                return None
            return self._error(query, data, REFUSED, tcp, "dropped", start)
        if not self.ready:
            return self._error(query, data, SERVFAIL, tcp, zone.text, start)
        result = self.authority.answer(query.labels, query.qtype, zone)
        if (result.rcode == NXDOMAIN and zone in self.fallthrough and fwd is not None
                and send is not None and fwd.pool_for(query.labels)):
            self._forward(query, data, tcp, peer, send, start)  # CoreDNS's fallthrough
            return None
        target = result.external
        if (target is not None and fwd is not None and send is not None
                and fwd.pool_for(target) and result.rcode == NOERROR):
            self._complete(query, data, result, target, tcp, peer, send, start)
            return None
        return self._authoritative(query, data, tcp, result, start)

    def _authoritative(self, query: wire.Query, data: bytes, tcp: bool, result: Result,
                       start: float) -> bytes:
        variants = self._render_rotations(query, result, tcp)
        wire0 = variants[0].wire
        at = variants[0].serial_at
        stat_id = self._count(query, data, tcp, result.zone.text, result.rcode, "etcd",
                              len(wire0), start)
        if result.rcode in (NOERROR, NXDOMAIN):
            if at >= 0:
                heads: tuple[bytes, ...] = (wire0[2:at],)
                tail: bytes | None = wire0[at + 4 :]
            else:
                heads, tail = tuple(v.wire[2:] for v in variants), None
            hit = self.tally.id(self.tally.stats[stat_id]._replace(duration_bucket=0))
            entry = Entry(heads, tail, 0.0, hit)
            self._store((tcp, data[2:]), entry, result.deps)
        if at >= 0:
            return wire0[:at] + self._serial + wire0[at + 4 :]
        return wire0

    def _render_rotations(
        self, query: wire.Query, result: Result, tcp: bool
    ) -> list[wire.Rendered]:
        answer = rrsets(result.answer)
        sections = (answer, rrsets(result.authority), rrsets(result.additional))
        first = self._render(query, result.rcode, sections, tcp)
        turns = max((len(s) for s in answer if s[0].rtype in ROTATE), default=1)
        if not self.shuffle or turns < 2 or first.serial_at >= 0:
            return [first]
        out = [first]
        for k in range(1, min(turns, MAX_ROTATIONS)):
            rotated = [s[k % len(s):] + s[: k % len(s)] if s[0].rtype in ROTATE else s
                       for s in answer]
            out.append(self._render(query, result.rcode, (rotated, *sections[1:]), tcp))
        return out

    def _render(self, query: wire.Query, rcode: int,
                sections: tuple[list[list[RR]], list[list[RR]], list[list[RR]]],
                tcp: bool, aa: bool = True) -> wire.Rendered:
        return wire.render(
            query, rcode, sections, limit=wire.reply_limit(query, tcp, self.max_udp),
            aa=aa, ra=self.forwarder is not None, max_udp=self.max_udp,
        )

    def _error(self, query: wire.Query, data: bytes, rcode: int, tcp: bool, zone: str,
               start: float) -> bytes:
        reply = self._render(query, rcode, ([], [], []), tcp, aa=False).wire
        self._count(query, data, tcp, zone, rcode, "", len(reply), start)
        return reply

    def _count(self, query: wire.Query, data: bytes, tcp: bool, zone: str, rcode: int,
               plugin: str, size: int, start: float) -> int:
        """Count the reply in the tally; returns its Stat's id."""
        seconds = time.perf_counter() - start
        return self.tally.add(("tcp" if tcp else "udp", zone, qtype_name(query.qtype),
                               rcode_name(rcode), query.do, plugin, len(data), size,
                               duration_bucket(seconds)), seconds)

    # -- forwarding ------------------------------------------------------------------

    def _forward(self, query: wire.Query, data: bytes, tcp: bool, peer: Any, send: Send,
                 start: float, pool: Pool | None = None) -> None:
        def done(outcome: Outcome) -> None:
            reply = self._relay(query, data, outcome, tcp, start)
            if self.querylog is not None:
                self.querylog.log(data, reply, peer, tcp, time.perf_counter() - start)
            send(reply, peer)

        assert self.forwarder is not None
        self.forwarder.fetch(query.labels, query.qname, query.qtype, query.qclass,
                             flags=query.flags, do=query.do, tcp=tcp, done=done, pool=pool)

    def _relay(self, query: wire.Query, data: bytes, outcome: Outcome, tcp: bool,
               start: float) -> bytes:
        resp = outcome.response
        if resp is None:
            reply = self._render(query, outcome.rcode, ([], [], []), tcp, aa=False).wire
            self._count(query, data, tcp, ".", outcome.rcode, "forward", len(reply), start)
            return reply
        cap = None  # the entry's TTL (capped by --cache-max-ttl) minus its age in whole seconds
        if outcome.expires and not outcome.stale:
            cap = max(0, round(outcome.expires - outcome.stored) - outcome.age)
        limit = wire.reply_limit(query, tcp, self.max_udp)
        fixed = 30 if outcome.stale else None
        turns = min(wire.rotations(resp), MAX_ROTATIONS) if self.shuffle else 1
        if turns == 1:
            reply = wire.relay(resp, query, limit=limit, max_udp=self.max_udp, age=outcome.age,
                               fixed_ttl=fixed, max_ttl=cap)
            variants = [reply]
        else:
            variants = [wire.relay(resp, query, limit=limit, max_udp=self.max_udp,
                                   age=outcome.age, fixed_ttl=fixed, max_ttl=cap, rotate=k)
                        for k in range(turns)]
            self._turn += 1
            reply = variants[self._turn % turns]
        plugin = "cache" if outcome.cached else "forward"
        stat_id = self._count(query, data, tcp, ".", resp.rcode, plugin, len(reply), start)
        if outcome.expires and not outcome.stale and not reply[2] & 0x02:
            # Keep the bytes until their TTLs would tick down by one second.
            until = min(outcome.expires, outcome.stored + outcome.age + 1)
            if until > time.monotonic():
                hit = self.tally.id(self.tally.stats[stat_id]._replace(plugin="cache",
                                                                       duration_bucket=0))
                denial = outcome.entry.denial if outcome.entry is not None else False
                entry = Entry(tuple(v[2:] for v in variants), None, until, hit,
                              outcome.entry, denial)
                self._store((tcp, data[2:]), entry, ())
        return reply

    def _complete(self, query: wire.Query, data: bytes, result: Result, target: Labels,
                  tcp: bool, peer: Any, send: Send, start: float) -> None:
        """Resolve a CNAME target outside our zones upstream and append its records."""

        def done(outcome: Outcome) -> None:
            if outcome.response is not None:
                records = wire.answer_records(outcome.response)
                age = outcome.age
                result.answer.extend(r._replace(ttl=max(0, r.ttl - age)) for r in records)
                if outcome.response.rcode == NXDOMAIN:
                    result.rcode = NXDOMAIN
            sections = (rrsets(result.answer), rrsets(result.authority),
                        rrsets(result.additional))
            reply = self._render(query, result.rcode, sections, tcp).wire
            self._count(query, data, tcp, result.zone.text, result.rcode, "etcd", len(reply),
                        start)
            if self.querylog is not None:
                self.querylog.log(data, reply, peer, tcp, time.perf_counter() - start)
            send(reply, peer)

        assert self.forwarder is not None
        self.forwarder.fetch(target, wire.encode_name(target), query.qtype, CLASS_IN,
                             flags=wire.RD, do=query.do, tcp=tcp, done=done)

    # -- the answer cache ------------------------------------------------------------

    def _store(self, key: CacheKey, entry: Entry, deps: set[Labels] | tuple[()]) -> None:
        if len(self._cache) >= self.cache_entries:
            self.clear_cache()
        self._cache[key] = entry
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
