"""Stage 1b, direct answers: first-time answers to the commonest queries, straight from
the raw bytes and the index, without the general machinery.

A name nobody asked before (a zone-wide mix over a big zone, search-path expansions, a
random-subdomain flood) misses the answer cache; through parse, lookup and render it costs
~30 µs, fifty times a hit. Most such queries have one of three shapes, and each can be
answered from the index with a handful of byte operations, as knot answers from wire
fragments prepared per zone:

* NXDOMAIN: a name in one of our zones with nothing at or below it and no wildcard at
  its closest encloser: header, the echoed question, the zone's SOA (a per-zone template;
  the serial is spliced in as the answer cache does).
* A or AAAA at a name whose records (at most ``SMALL`` of them) hold exactly one address
  of that family: the one record, its owner a pointer to the question. When it is the
  name's only address (a Service's, beside its SRV records), its bytes are kept on the
  name's node (``Node.wire``) from the first such answer on, so that a name asked again
  reads one object instead of its records.
* NODATA: A or AAAA at such a name holding addresses only of the other family.

Contract: a reply from here is byte for byte what the general path (parse -> zones ->
``lookup`` -> ``render``) returns for the same query and index, and is counted the same
way; everything else returns None and takes the general path. That covers every query
this stage is unsure of: any header or EDNS shape but the plain one (EDNS options other
than unknown ones, NSID included, go on), wildcards, the apex, the cluster zone's
structural names, fallthrough zones, DO=1 in a signed zone, zone-transfer and SOA
queries, a name whose SOA would be compressed differently (``dns``/``hostmaster`` just
below the apex), and before the first load. tests/skyserve/pipeline/test_direct.py checks
the equality on every shape against the general path.

Finding the name: the query's own bytes, lower-cased (``data[12:end].lower()``; label
lengths are under 64, which ``lower`` leaves alone), are looked up in the index's flat
table (``Index.names``), knot's way: one dict lookup instead of decoding labels and
walking the trie. Where the name ends comes from the packet's length in the two plain
shapes (no OPT: 4 octets of type and class after it; an OPT without options: 15), and a
table hit proves it: a key is a well-formed name, so the query's name is that name and
ends there. A name not in the table, with a first label that is not a wildcard, does not
exist; its closest encloser is its longest suffix in the table, found by dropping a label
at a time (``encloser``: most often the parent; a search path's expansion, such as
``www.example.com.ns.svc.cluster.local``, a few labels more), which also proves it well
formed. The cluster zone's own levels (``svc``, a namespace, ...) are recognised from the
octets too (``layout_level``). Any other shape (EDNS options, a name that ends in none of
our zones' names) is read label by label as before (``_walk``).

Admission: these answers cost a few microseconds, so one that will not repeat is not worth
a cache entry (a flood of new names would otherwise fill the cache and empty it, over and
over). An answer from here enters the answer cache the second time its query is seen
(``AnswerCache.seen_before``); a repeated name is then a plain hit. While most answers
from here do not repeat (a flood), only some meet the doorkeeper (``AnswerCache.sampling``).
"""

from __future__ import annotations

import struct
import time
from random import random

from skydns.record import Labels, Record

from ..index import WILDCARD_LABELS, Node, encloser, subtree
from ..lookup import group_filter, structural, wildcard_deps
from ..tally import DURATION_BUCKETS, Stat, duration_bucket
from ..wire import constants as T
from ..wire.constants import AA, CD, QR, RA, RD, RR_FIXED
from .answers import OFFER_EVERY, AnswerCache
from .context import Shared
from .plain import Plain, plain_query
from .zonefacts import Made, Shape, ZoneFacts, layout_level, soa_pieces
from .zones import Zones

__all__ = ["Direct", "Plain", "plain_query"]  # the last two for stage 1c (sendnow)

SMALL = 8  # records at or below a name read here; more (or other shapes) go the long way
NOERROR, NXDOMAIN = T.NOERROR, T.NXDOMAIN
RCODES = {NOERROR: "NOERROR", NXDOMAIN: "NXDOMAIN"}  # their metric labels
ANSWER, NODATA, KIND_NXDOMAIN = 0, 1, 2  # the three kinds of reply made here
MAX_SHAPES = 1024  # reply shapes kept per zone (``ZoneFacts.replies``), query tails
COUNTS = struct.Struct("!HHIH")  # flags, QDCOUNT, ANCOUNT and NSCOUNT as one, ARCOUNT
ONE_ANSWER, ONE_AUTHORITY = 0x10000, 0x1
FIRST_BUCKET = DURATION_BUCKETS[0]  # the duration bucket of (nearly) every direct answer
NOT_HERE = frozenset((T.AXFR, T.IXFR, T.SOA, T.ANY))  # transfers, SOA probes, ANY
ADDRESS_TYPES = {T.A: 4, T.AAAA: 16}  # qtype -> address length
QUESTION_ONLY = b"\0\1\0\0\0\0\0\0"  # QDCOUNT 1, nothing else
QUESTION_AND_OPT = b"\0\1\0\0\0\0\0\1"  # and an additional record, plain if an OPT
OPT_START = b"\0\0\x29"  # an OPT record: the root as owner, type 41
CLASS_IN = b"\0\1"
ANSWER_FIXED = 2 + RR_FIXED.size  # an answer record before its address: owner pointer, type...
OFFERED = 1 / OFFER_EVERY  # the share of answers the doorkeeper sees while sampling


class Direct:
    """Answers the three common shapes from raw query bytes; None for anything else."""

    def __init__(self, shared: Shared, zones: Zones) -> None:
        settings = shared.settings
        self.zones = zones
        self.answers: AnswerCache = shared.answers
        self.tally = shared.stats.tally
        self.counts, self.seconds = self.tally.counts, self.tally.seconds  # grown in place
        self.forwarder = shared.forwarder
        self.opt = shared.plain_opt
        self.ra = RA if shared.forwarder is not None else 0
        self.default_ttl = settings.lookup.default_ttl
        self.tails: dict[bytes, tuple[int, int]] = {}  # see ``_tail``
        signer = settings.dnssec
        # Longest apex first, as ``Authority.zone_of`` matches.
        authority = zones.authority
        self.facts = [ZoneFacts(z, authority.soa(z), z in settings.fallthrough,
                                signer is not None and signer.signs(z))
                      for z in authority.zones]
        self.zone_wires = tuple(zone.wire for zone in self.facts)

    def answer(self, data: bytes, tcp: bool, start: float) -> bytes | None:
        """The reply, or None when the general path must answer."""
        if not self.zones.ready:
            return None
        n = len(data)
        counts = data[4:12]
        if counts == QUESTION_ONLY:
            end = n - 4
        elif counts == QUESTION_AND_OPT:
            end = n - 15  # if the OPT has no options: the table lookup proves it
        else:
            return None  # other records: not plain
        if data[2] & 0xF8 or end < 13:
            return None if data[2] & 0xF8 else self._walk(data, tcp, start)
        tail = data[end:]
        read = self.tails.get(tail)
        if read is None:
            read = self._tail(tail)
            if read is None:
                return self._walk(data, tcp, start)
        qtype, edns = read
        key = data[12:end].lower()
        names = self.zones.names
        node = names.get(key)
        first = key[0]
        nx = node is None
        if nx:
            parent = names.get(key[first + 1 :]) if 0 < first < 64 and len(key) <= 255 else None
            if parent is None:
                # A name whose octets end in none of our zones' (a forwarded name, every
                # one of them) is not read label by label only to find that out (``_walk``:
                # ~2 µs, a tenth of a forwarded query's CPU).
                if not key.endswith(self.zone_wires):
                    return None
                # Further up: a search path's expansion, most often.
                parent = encloser(names, key, first + 1) if 0 < first < 64 else None
                if parent is None:
                    return self._walk(data, tcp, start)
            if (first == 1 and key[1] == 42) or (first == 3 and key[1:4] == b"any") or (
                    "*" in parent.children):  # ``*`` or ``any``: a wildcard query
                return None  # a wildcard query, or a wildcard answers: the general path
        # The zone, as ``_zone_of``: the longest apex the name ends in at a label start.
        for zone in self.facts:
            if key.endswith(zone.wire):
                apex = end - 12 - zone.wire_length
                below = 0
                if apex != first + 1:  # the name is more than one label below the apex
                    at = 0
                    while at < apex:
                        below, at = at, at + key[at] + 1
                    if at != apex:
                        continue  # only the apex's octets inside a label
                if not apex or key[below:apex] in zone.near_apex_wire:
                    return None  # the apex, or a name the SOA's names share
                break
        else:
            return None
        if (edns == 2 and zone.signed) or (self.forwarder is not None and (
                self.probing() or (nx and self._falls_through(zone)))):
            return None
        # The cluster layout's own levels that exist go the general path (NODATA, not the
        # records below them); one that does not is an NXDOMAIN like any other, but ``svc``
        # and ``pod`` always exist. A cheap filter first: they are at most two labels below
        # the apex, or start with ``_`` (most names are neither).
        if zone.cluster and (below <= first + 1 or key[1] == 95) and (
                not nx or not below) and layout_level(key, below, apex):
            return None
        found = b"" if node is None else self._addresses(node, qtype)
        if found is None:
            return None
        kind = KIND_NXDOMAIN if nx else ANSWER if found else NODATA
        flags = (data[2] << 8 | data[3]) & (RD | CD)
        return self._send(data, start, (n, end, qtype, kind, flags, edns, tcp), zone, found, key)

    def _tail(self, tail: bytes) -> tuple[int, int] | None:
        """What follows the question's name, if it is a plain shape: (type, EDNS), kept
        for the next query with the same octets; None for ``_walk`` to read."""
        qtype = tail[0] << 8 | tail[1]
        if tail[2:4] != CLASS_IN or qtype in NOT_HERE:
            return None
        if len(tail) == 4:
            edns = 0
        elif tail[4:7] == OPT_START and not tail[10] and tail[13:] == b"\0\0":
            edns = 2 if tail[11] & 0x80 else 1  # version 0, no options
        else:
            return None
        if len(self.tails) < MAX_SHAPES:
            self.tails[tail] = (qtype, edns)
        return qtype, edns

    def _walk(self, data: bytes, tcp: bool, start: float) -> bytes | None:
        """``answer`` for a shape the flat table cannot confirm: the question read into
        labels, the name found by walking the trie."""
        plain = plain_query(data)
        if plain is None or plain[4] in NOT_HERE:
            return None
        labels, end, qtype, edns = plain[2:]
        zone = self._zone_of(labels)
        if zone is None or (edns == 2 and zone.signed) or self.probing():
            return None
        path = labels[::-1]
        rel = path[zone.depth :]
        if not WILDCARD_LABELS.isdisjoint(path) or rel[0] in zone.near_apex or (
                zone.cluster and structural(rel)):
            return None
        depth, node = self.zones.authority.index.closest_encloser(path)
        nx = depth < len(path)
        if nx and ((depth >= zone.depth and "*" in node.children) or self._falls_through(zone)):
            return None  # a wildcard answers, or a forwarder: the general path
        found = b"" if nx else self._addresses(node, qtype)
        if found is None:
            return None
        kind = KIND_NXDOMAIN if nx else ANSWER if found else NODATA
        flags = (data[2] << 8 | data[3]) & (RD | CD)
        return self._send(data, start, (len(data), end, qtype, kind, flags, edns, tcp), zone,
                          found, labels)

    def _send(self, data: bytes, start: float, shape: Shape, zone: ZoneFacts, found: bytes,
              name: bytes | Labels) -> bytes:
        """The reply of a ``shape`` (its kind ``ANSWER``: ``found`` is its one record;
        ``NODATA``, ``NXDOMAIN``), counted, and admitted to the answer cache on a second
        sighting. ``name``: the question's name as the caller read it, the flat table's key
        or labels.

        The doorkeeper is given the hash of that name mixed with the shape's (worked out
        once per shape): the key's hash is already computed (the table lookup cached it in
        the bytes object), where hashing the query again would cost a slice and a pass over
        its bytes. Queries that differ only in ID or case are one query to it: one of them
        is admitted a sighting early, nothing worse."""
        answers = self.answers
        if zone.serial is not answers.serial:  # a new revision: new SOA serials
            zone.renew(answers.serial)
        made = zone.replies.get(shape)
        if made is None:
            made = self._shape(shape, zone, len(found))
        head, tail, stat, serial_at, salt = made
        reply = data[:2] + head + data[12 : shape[1] + 4] + found + tail
        seconds = time.perf_counter() - start
        if seconds <= FIRST_BUCKET:
            self.counts[stat] += 1
            self.seconds[stat] += seconds
        else:
            stat = self._count(self.tally.stats[stat], seconds)
        if (not answers.sampling or random() < OFFERED) and answers.seen_before(
                hash(name) ^ salt) and answers.admits():
            self._keep(data, shape[6], reply, stat, name, zone, serial_at)
        return reply

    def _shape(self, shape: Shape, zone: ZoneFacts, found: int) -> Made:
        """What every reply of a shape in ``zone`` shares (``Made``), worked out once per
        revision: the header after the ID, what follows the answer record (the SOA for a
        negative answer, our OPT), its Stat's Tally id, where the SOA serial is, and the
        shape's hash for the doorkeeper."""
        size, end, qtype, kind, flags, edns, tcp = shape
        rcode = NXDOMAIN if kind == KIND_NXDOMAIN else NOERROR
        counts = ONE_ANSWER if kind == ANSWER else ONE_AUTHORITY
        head = COUNTS.pack(QR | AA | self.ra | flags | rcode, 1, counts, edns > 0)
        tail, serial_at = b"", -1
        if kind != ANSWER:
            before, after = soa_pieces(zone.soa_rr, zone.depth, end - zone.wire_length)
            tail, serial_at = before + zone.serial + after, end + 4 + len(before)
        tail += self.opt[edns]
        stat = self.tally.id(Stat("tcp" if tcp else "udp", zone.text, T.qtype_name(qtype),
                                  RCODES[rcode], edns == 2, "etcd", size,
                                  end + 4 + found + len(tail), 0))
        if len(zone.replies) >= MAX_SHAPES:
            zone.replies.clear()  # odd query types or sizes: not worth a growing table
        made = zone.replies[shape] = (head, tail, stat, serial_at, hash(shape))
        return made

    def _count(self, stat: Stat, seconds: float) -> int:
        """Count a reply slower than the first duration bucket: its Tally id."""
        return self.tally.add(stat._replace(duration_bucket=duration_bucket(seconds)), seconds)

    def probing(self) -> bool:
        """Whether loop-detection probes are out: their replies go to the loop check."""
        return self.forwarder is not None and bool(self.forwarder.probes)

    def _falls_through(self, zone: ZoneFacts) -> bool:
        """Whether a name we do not have in ``zone`` may be forwarded instead (the zones
        stage decides, by the forwarder's pools)."""
        return zone.fallthrough and self.forwarder is not None

    def _keep(self, data: bytes, tcp: bool, reply: bytes, stat: int, name: bytes | Labels,
              zone: ZoneFacts, serial_at: int) -> None:
        """Admit a reply to the answer cache, with the paths the general path would name
        (a name that does not exist also depends on wildcards and names appearing above
        it); ``serial_at``: where the SOA serial is, or -1. ``name``: the question's labels,
        or the flat table's key (then the labels are read now)."""
        if isinstance(name, tuple):
            labels = name
        else:
            plain = plain_query(data)
            assert plain is not None  # the flat table answers only plain queries
            labels = plain[2]
        path = labels[::-1]
        index = self.zones.authority.index
        depth, _ = index.closest_encloser(path)
        deps = {path}
        if depth < len(path):
            deps |= wildcard_deps(index, path, depth, zone.depth)
        self.answers.keep_ours(data, tcp, [reply], serial_at, stat, deps)

    def _zone_of(self, labels: Labels) -> ZoneFacts | None:
        """The zone of a name below its apex (an apex goes the long way), like
        ``Authority.zone_of``."""
        n = len(labels)
        for zone in self.facts:
            if n >= zone.depth and labels[n - zone.depth :] == zone.labels:
                return zone if n > zone.depth else None
        return None

    def _addresses(self, node: Node, qtype: int) -> bytes | None:
        """The answer section for A/AAAA at an existing name: one record's bytes, b"" for
        NODATA, None when the name is not one of the simple shapes."""
        size = ADDRESS_TYPES.get(qtype)
        if size is None:
            return None
        wire = node.wire
        if wire is not None:  # made before (``Node.wire``): the name's one address
            return wire if len(wire) == ANSWER_FIXED + size else b""
        if node.count > SMALL:
            return None
        held = node.held
        found: Record | None
        if isinstance(held, Record) and node.count == 1:  # the usual leaf: one record
            found, address, seen = held, held.address, 1
            if address is None:
                return None  # a CNAME, TXT or SRV name
            if len(address) != size:
                return b""
        else:
            records = _only(node) if node.count == 1 else group_filter(subtree(node))
            found, address, seen = None, None, 0  # seen: addresses of either family
            for r in records:
                if r.address is None:
                    continue
                seen += 1
                if len(r.address) == size:
                    if found is not None:
                        return None  # several: an RRset to merge and rotate
                    found, address = r, r.address
            if not seen:
                return None  # no addresses at all: a CNAME, TXT or SRV name
            if found is None or address is None:
                return b""
        wire = b"\xc0\x0c" + RR_FIXED.pack(qtype, T.CLASS_IN, found.ttl or self.default_ttl,
                                           size) + address
        # Kept while it is the name's one address, and only if its TTL is its own: a reload
        # may change the default.
        if seen == 1 and found.ttl:
            node.wire = wire
        return wire


def _only(node: Node) -> tuple[Record, ...]:
    """The one record of a subtree that holds one (``subtree`` without the sort)."""
    while not node.values:
        node = next(iter(node.children.values()))
    return node.values


