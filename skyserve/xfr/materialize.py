"""One of our zones as a standard zone: RRsets at owner names, kept in step with the index.

What a secondary gets must answer like skyserve, so every RRset is read from skyserve's own
answers (``Authority.answer``): an owner name's RRsets are the records each query type
answers *at that name* (a CNAME's chased targets belong to other owners). Owners are:

* the apex: NS (from ``ns.dns.<zone>``), the records of ``apex.dns.<zone>``; the SOA is
  added per transfer, since its serial is the revision being served;
* every name that has records at or below it, with the union of its subtree, exactly as
  skyserve answers it (SkyDNS directories are RRsets, not empty non-terminals);
* a ``*`` key as an RFC 4592 wildcard, holding what skyserve answers for a name below the
  parent that does not exist (read through such a name, then renamed ``*.<parent>``).

Not expressible, so left out and counted (``skipped``): names with an ``any`` label or a
``*`` label other than the first, which skyserve treats as query-time patterns; RRsets too
large for any DNS message (a directory union of thousands of records: skyserve answers
those with TC and no records, even over TCP); and names of a more specific zone we serve.
See docs/transfers.md for the whole mapping.

A zone may not hold a CNAME beside other data, which skyserve can answer (one alias record
makes CNAME, SRV, PTR and MX). One rule decides, per owner:

1. beside A, AAAA, TXT, or at the apex (SOA, NS): the CNAME goes — a *conflict*, logged
   and counted, since skyserve answers those types from that data too;
2. otherwise the name is an alias and the CNAME stays, SRV/MX/PTR go — except in a reverse
   zone (PTR is kept), at a name whose first label starts with ``_`` (SRV is kept) and where
   a record has ``mail`` set (MX is kept): there the CNAME goes, without a conflict.
"""

from __future__ import annotations

import logging

from skydns.record import Labels, Record, is_ipv4

from ..index import WILDCARD_LABELS
from ..lookup import Authority, Result, Zone
from ..wire import constants as T
from ..wire.constants import NOERROR
from ..wire.rr import RR, rrsets

log = logging.getLogger(__name__)

RRsets = tuple[tuple[RR, ...], ...]
ALIAS_TYPES = frozenset((T.SRV, T.MX, T.PTR))
REVERSE = (("in-addr", "arpa"), ("ip6", "arpa"))
PROBE = "\x00skyserve-wildcard"  # a label no query can reach the index with
MAX_RRSET = 65535 - 512  # wire bytes: no message (and no BIND rdataslab) holds a larger one
# Records in an RRset that cannot reach MAX_RRSET unless it is TXT: every other type here
# has at most one name (255 bytes) and 20 other bytes of rdata, 12 of owner and header.
SMALL = MAX_RRSET // (12 + 20 + 257)


class ZoneData:
    def __init__(self, zone: Zone, inner: list[Zone]) -> None:
        self.zone = zone
        self.inner = [z.path for z in inner]  # more specific zones: not ours to transfer
        self.owners: dict[Labels, RRsets] = {}  # owner path (root first) -> its RRsets
        self.dirty: set[Labels] = set()
        self.full = True  # the next pass reads every owner from the index
        self.conflicts: set[Labels] = set()
        self.skipped: set[Labels] = set()
        self.reverse = any(zone.labels[-2:] == r for r in REVERSE)

    @property
    def pending(self) -> bool:
        return self.full or bool(self.dirty)

    def mark(self, path: Labels) -> bool:
        """An index change at ``path``: the owners it may change are dirty. Ours at all?"""
        top = len(self.zone.path)
        if path[:top] != self.zone.path:
            return False
        for depth in range(top, len(path) + 1):
            owner = path[:depth]
            if self._inner(owner):
                return depth > top
            if depth > top and owner[-1] in WILDCARD_LABELS:
                if owner[-1] == "*":
                    self.dirty.add(owner)
                if owner[-1] == "any":
                    self.skipped.add(owner)
                elif depth < len(path):
                    self.skipped.add(path[: depth + 1])
                return True
            self.dirty.add(owner)
        return True

    def step(self, authority: Authority, limit: int) -> list[tuple[Labels, RRsets, RRsets]]:
        """Recompute up to ``limit`` dirty owners; returns (owner, old, new) for changes."""
        if self.full:
            self.full = False
            self.skipped.clear()
            self.dirty.update(self.owners)
            self.dirty.update(self._walk(authority))
        changed = []
        for _ in range(min(limit, len(self.dirty))):
            path = self.dirty.pop()
            old = self.owners.get(path, ())
            new = self._owner(authority, path)
            if new:
                self.owners[path] = new
            else:
                self.owners.pop(path, None)
            if new != old:
                changed.append((path, old, new))
        self.skipped = {p for p in self.skipped if authority.index.find(p) is not None}
        return changed

    def records(self) -> int:
        return sum(len(s) for sets in self.owners.values() for s in sets)

    # -- one owner -------------------------------------------------------------------

    def _owner(self, authority: Authority, path: Labels) -> RRsets:
        zone, name = self.zone, tuple(reversed(path))
        apex = path == zone.path
        self.skipped.discard(path)
        if not apex and authority.index.find(path) is None:
            self.conflicts.discard(path)
            return ()
        asked = (PROBE, *name[1:]) if name and name[0] == "*" else name
        records = authority.records(asked, zone, Result(NOERROR, zone))  # deps unused
        if records is None:
            return ()
        by_type: dict[int, list[RR]] = {}
        for qtype in sorted(relevant(records) | ({T.NS} if apex else set())):
            # Only the type asked: a CNAME now answers every type, and it is asked for too.
            found = [rr for rr in authority.answer(asked, qtype, zone).answer
                     if rr.owner == asked and rr.rtype == qtype]
            if asked != name:  # read through the probe name: the records are the wildcard's
                found = [rr._replace(owner=name) for rr in found]
            if found:
                by_type[qtype] = found
        self._one_cname(path, name, by_type, records, apex)
        sets = rrsets([rr for t in sorted(by_type) for rr in by_type[t]])
        fitting = tuple(tuple(s) for s in sets if _fits(s))
        if len(fitting) < len(sets):
            self.skipped.add(path)
            log.warning("zone transfer of %s: an RRset at %s is too large for any DNS message; "
                        "left out", self.zone.text, ".".join(name) + ".")
        return fitting

    def _one_cname(self, path: Labels, name: Labels, by_type: dict[int, list[RR]],
                   records: list[Record], apex: bool) -> None:
        """Apply the module's CNAME rule to one owner's RRsets."""
        if T.CNAME not in by_type or len(by_type) == 1:
            self.conflicts.discard(path)
            return
        if apex or set(by_type) - ALIAS_TYPES - {T.CNAME}:
            del by_type[T.CNAME]
            if path not in self.conflicts:
                self.conflicts.add(path)
                log.warning("zone transfer of %s: %s has a CNAME beside other data; the "
                            "transferred zone leaves the CNAME out", self.zone.text,
                            ".".join(name) + ".")
            return
        self.conflicts.discard(path)
        if self.reverse or name[0].startswith("_") or any(r.mail for r in records):
            del by_type[T.CNAME]
        else:
            for rtype in ALIAS_TYPES:
                by_type.pop(rtype, None)

    # -- which owners exist ----------------------------------------------------------

    def _walk(self, authority: Authority) -> set[Labels]:
        """Every owner of the zone in the index: the apex and each expressible node."""
        found = {self.zone.path}
        top = authority.index.find(self.zone.path)
        stack = [(self.zone.path, top)] if top is not None else []
        while stack:
            path, node = stack.pop()
            for label, child in node.children.items():
                sub = (*path, label)
                if label in WILDCARD_LABELS:
                    if label == "*":
                        found.add(sub)
                    self.skipped.update((*sub, c) for c in child.children)
                    if label == "any":
                        self.skipped.add(sub)
                elif not self._inner(sub):
                    found.add(sub)
                    stack.append((sub, child))
        return found

    def _inner(self, path: Labels) -> bool:
        return any(path[: len(z)] == z for z in self.inner)


def _fits(rrset: list[RR]) -> bool:
    # Most RRsets are far too small to need their size added up (a zone's every owner is
    # checked): below SMALL records of a type with at most one name, no bound is reached.
    if len(rrset) <= SMALL and rrset[0].rtype != T.TXT:
        return True
    return _size(rrset) <= MAX_RRSET


def _size(rrset: list[RR]) -> int:
    """An upper bound of the RRset's wire size (owners compressed, rdata names not)."""
    total = 0
    for rr in rrset:
        names = [p for p in rr.rdata if isinstance(p, tuple)]
        fixed = sum(len(p) if isinstance(p, bytes) else 2 for p in rr.rdata
                    if not isinstance(p, tuple))
        total += 12 + fixed + sum(len(".".join(n)) + 2 for n in names)
    return total


def relevant(records: list[Record]) -> set[int]:
    """The query types that can answer anything owned by a name with these records.

    Only an optimization (each type asked costs a lookup): a type left out here answers
    nothing at the name itself, or only the CNAME that asking CNAME finds as well.
    """
    types: set[int] = set()
    for r in records:
        if r.address is not None:
            types.add(T.A if is_ipv4(r.address) else T.AAAA)
        elif r.host:
            types.update((T.CNAME, T.PTR))
        if r.text:
            types.add(T.TXT)
        if r.host and r.port != -1:
            types.add(T.SRV)
        if r.host and r.mail:
            types.add(T.MX)
    return types
