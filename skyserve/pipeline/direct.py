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
  of that family: the one record, its owner a pointer to the question.
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

Admission: these answers cost a few microseconds, so one that will not repeat is not worth
a cache entry (a flood of new names would otherwise fill the cache and empty it, over and
over). An answer from here enters the answer cache the second time its query is seen
(``AnswerCache.seen_before``); a repeated name is then a plain hit.
"""

from __future__ import annotations

import struct
import time

from skydns.record import Labels, Record

from ..index import WILDCARD_LABELS, Node, subtree
from ..lookup import Zone, group_filter, structural, wildcard_deps
from ..tally import DURATION_BUCKETS, duration_bucket
from ..wire import constants as T
from ..wire.constants import AA, CD, HEADER, QR, RA, RD, RR_FIXED, SOA_TIMERS
from ..wire.query import encode_name
from ..wire.rr import RR
from .answers import AnswerCache
from .context import Shared
from .zones import Zones

SMALL = 8  # records at or below a name read here; more (or other shapes) go the long way
NOERROR, NXDOMAIN = (T.NOERROR, "NOERROR"), (T.NXDOMAIN, "NXDOMAIN")  # code, metric label
COUNTS = struct.Struct("!HHHIH")  # ID, flags, QDCOUNT, ANCOUNT and NSCOUNT as one, ARCOUNT
ONE_ANSWER, ONE_AUTHORITY = 0x10000, 0x1
FIRST_BUCKET = DURATION_BUCKETS[0]  # the duration bucket of (nearly) every direct answer
NOT_HERE = frozenset((T.AXFR, T.IXFR, T.SOA, T.ANY))  # transfers, SOA probes, ANY
ADDRESS_TYPES = {T.A: 4, T.AAAA: 16}  # qtype -> address length


class Direct:
    """Answers the three common shapes from raw query bytes; None for anything else."""

    def __init__(self, shared: Shared, zones: Zones) -> None:
        settings = shared.settings
        self.zones = zones
        self.answers: AnswerCache = shared.answers
        self.tally = shared.stats.tally
        self.forwarder = shared.forwarder
        self.opt = shared.plain_opt
        self.ra = RA if shared.forwarder is not None else 0
        self.default_ttl = settings.lookup.default_ttl
        signer = settings.dnssec
        # Longest apex first, as ``Authority.zone_of`` matches.
        authority = zones.authority
        self.facts = [ZoneFacts(z, authority.soa(z), z in settings.fallthrough,
                                signer is not None and signer.signs(z))
                      for z in authority.zones]

    def answer(self, data: bytes, tcp: bool, start: float) -> bytes | None:
        """The reply, or None when the general path must answer."""
        if not self.zones.ready:
            return None
        plain = plain_query(data)
        if plain is None or plain[4] in NOT_HERE:
            return None
        qid, flags, labels, end, qtype, edns = plain
        zone = self._zone_of(labels)
        if zone is None or (edns == 2 and zone.signed) or self.probing():
            return None
        path = labels[::-1]
        rel = path[zone.depth :]
        if not WILDCARD_LABELS.isdisjoint(path) or rel[0] in zone.near_apex or (
                zone.cluster and structural(rel)):
            return None
        depth, node = self.zones.authority.index.closest_encloser(path)
        if depth < len(path):
            if depth >= zone.depth and "*" in node.children:
                return None  # a wildcard answers: the general path
            rcode, found = NXDOMAIN, b""
        else:
            answer = self._addresses(node, qtype)
            if answer is None:
                return None
            rcode, found = NOERROR, answer
        if found:
            body, counts = found, ONE_ANSWER
        else:
            body, counts = zone.negative(end, self.answers.serial), ONE_AUTHORITY
        head = QR | AA | self.ra | (flags & (RD | CD)) | rcode[0]
        reply = COUNTS.pack(qid, head, 1, counts, edns > 0) + data[12 : end + 4] + body
        if edns:
            reply += self.opt[edns]
        seconds = time.perf_counter() - start
        stat = self.tally.add(("tcp" if tcp else "udp", zone.text, T.qtype_name(qtype),
                               rcode[1], edns == 2, "etcd", len(data), len(reply),
                               0 if seconds <= FIRST_BUCKET else duration_bucket(seconds)),
                              seconds)
        if self.answers.seen_before(data, tcp) and self.answers.admits():
            self._keep(data, tcp, reply, stat, path, depth, zone, end + len(body) - 16)
        return reply

    def probing(self) -> bool:
        """Whether loop-detection probes are out: their replies go to the loop check."""
        return self.forwarder is not None and bool(self.forwarder.probes)

    def _keep(self, data: bytes, tcp: bool, reply: bytes, stat: int, path: Labels,
              depth: int, zone: ZoneFacts, serial_at: int) -> None:
        """Admit a reply to the answer cache, with the paths the general path would name
        (a name that does not exist also depends on wildcards and names appearing above
        it); ``serial_at`` only counts for a negative answer."""
        deps = {path}
        if depth < len(path):
            deps |= wildcard_deps(self.zones.authority.index, path, depth, zone.depth)
        negative = reply[7] == 0  # no answer records: the SOA is in the authority section
        self.answers.keep_ours(data, tcp, [reply], serial_at if negative else -1, stat, deps)

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
        if size is None or node.count > SMALL:
            return None
        records = _only(node) if node.count == 1 else group_filter(subtree(node))
        found: Record | None = None
        seen = False
        for r in records:
            address = r.address
            if address is None:
                continue
            seen = True
            if len(address) == size:
                if found is not None:
                    return None  # several: an RRset to merge and rotate
                found = r
        if not seen:
            return None  # no addresses at all: a CNAME, TXT or SRV name
        if found is None:
            return b""
        assert found.address is not None
        ttl = found.ttl or self.default_ttl
        return b"\xc0\x0c" + RR_FIXED.pack(qtype, T.CLASS_IN, ttl, size) + found.address


def _only(node: Node) -> tuple[Record, ...]:
    """The one record of a subtree that holds one (``subtree`` without the sort)."""
    while not node.values:
        node = next(iter(node.children.values()))
    return node.values


Plain = tuple[int, int, Labels, int, int, int]  # ID, flags, labels, question end, type, EDNS


def plain_query(data: bytes) -> Plain | None:
    """A query of the plain shape: one question of class IN, with no other records but a
    plain OPT (``plain_edns``: 0 none, 1, or 2 with DO); None for anything else (a
    response, another opcode, other records, a name the general path must read).

    The last query's answer is remembered: the direct stage reads each query, and a
    forwarded one is read again by the next stage (``sendnow``). It holds the bytes, so
    an identical object is the same query."""
    global _last
    last = _last
    if last[0] is data:
        return last[1]
    plain = _read_plain(data)
    _last = (data, plain)
    return plain


_last: tuple[bytes, Plain | None] = (b"", None)


def _read_plain(data: bytes) -> Plain | None:
    if len(data) < 17:
        return None
    qid, flags, qdcount, ancount, nscount, arcount = HEADER.unpack_from(data)
    if flags & 0xF800 or qdcount != 1 or ancount or nscount or arcount > 1:
        return None  # a response, another opcode, or more than a question and an OPT
    try:
        labels, end = plain_question(data)
        qtype = data[end] << 8 | data[end + 1]
        if data[end + 2] or data[end + 3] != T.CLASS_IN:
            return None
        edns = plain_edns(data, end + 4) if arcount else 0
    except IndexError:
        return None
    return None if edns < 0 else (qid, flags, labels, end, qtype, edns)


def plain_question(data: bytes) -> tuple[Labels, int]:
    """The question name's labels, lower-case, and where its type starts. Names with a
    compressed or extended label, or longer than 255 octets, raise IndexError (the general
    path gives them their FORMERR)."""
    pos, labels = 12, []
    while True:
        n = data[pos]
        if not n:
            break
        if n > 63:
            raise IndexError("not a plain label")
        labels.append(data[pos + 1 : pos + 1 + n].lower().decode("latin-1"))
        pos += 1 + n
    if pos > 266 or pos + 4 >= len(data):  # past 255 octets, or no type and class
        raise IndexError("not a plain question")
    return tuple(labels), pos + 1


def plain_edns(data: bytes, pos: int) -> int:
    """The one additional record: 1 for a plain OPT, 2 with DO set, -1 for anything the
    general path must see (another record type, a version, NSID, trailing bytes)."""
    if data[pos] != 0 or data[pos + 1] << 8 | data[pos + 2] != T.OPT:
        return -1
    version, do = data[pos + 6], data[pos + 7] & 0x80
    length = data[pos + 9] << 8 | data[pos + 10]
    end = pos + 11 + length
    if version or end != len(data) or not _plain_options(data, pos + 11, end):
        return -1
    return 2 if do else 1


def _plain_options(data: bytes, pos: int, end: int) -> bool:
    """Whether the options are well formed and none asks for something (NSID)."""
    while pos < end:
        if pos + 4 > end:
            return False
        code, length = data[pos] << 8 | data[pos + 1], data[pos + 2] << 8 | data[pos + 3]
        if code == T.OPT_NSID:
            return False
        pos += 4 + length
    return pos == end


class ZoneFacts:
    """What the direct stage needs of a zone, worked out once."""

    __slots__ = ("cluster", "depth", "fallthrough", "labels", "near_apex", "signed", "soa",
                 "soa_rr", "text", "wire_length")

    def __init__(self, zone: Zone, soa: RR, fallthrough: bool, signed: bool) -> None:
        self.labels = zone.labels
        self.depth = len(zone.labels)
        self.text = zone.text
        self.cluster = zone.cluster
        self.fallthrough = fallthrough
        self.signed = signed
        self.wire_length = len(encode_name(zone.labels))
        self.soa_rr = soa  # ``lookup.Authority.soa``: what the general path renders
        mname, rname = soa.rdata[0], soa.rdata[1]
        # A question with one of these just below the apex shares more of the SOA's names
        # than the apex: ``render`` would compress them further than the template does.
        self.near_apex = frozenset((mname[-self.depth - 1], rname[-self.depth - 1]))
        self.soa: dict[int, tuple[bytes, bytes]] = {}  # by where the apex is in the question

    def negative(self, end: int, serial: bytes) -> bytes:
        """The authority section of a negative answer: the zone's SOA, compressed against
        the question (its apex is the question name's last labels), with ``serial``."""
        pointer = end - self.wire_length
        pieces = self.soa.get(pointer)
        if pieces is None:
            pieces = self.soa[pointer] = soa_pieces(self.soa_rr, self.depth, pointer)
        return pieces[0] + serial + pieces[1]


def soa_pieces(soa: RR, depth: int, pointer: int) -> tuple[bytes, bytes]:
    """The synthesized SOA as ``render`` writes it after a question whose apex (``depth``
    labels) starts at ``pointer``: the bytes before the serial and after. Its owner is the
    apex; its two names are their own labels above the apex, then a pointer to it (they
    share nothing else with each other)."""
    apex = (0xC000 | pointer).to_bytes(2, "big")
    mname, rname, *timers = soa.rdata
    rdata_head = (encode_name(mname[:-depth])[:-1] + apex
                  + encode_name(rname[:-depth])[:-1] + apex)
    tail = SOA_TIMERS.pack(*timers)
    fixed = RR_FIXED.pack(T.SOA, T.CLASS_IN, soa.ttl, len(rdata_head) + 4 + len(tail))
    return apex + fixed + rdata_head, tail
