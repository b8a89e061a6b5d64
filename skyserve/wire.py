"""DNS messages on the wire, with no sockets: parse a query, render a reply.

Only what a server needs is parsed: the header, the one question, and the OPT record
(RFC 6891). Replies are rendered RRset by RRset with name compression; an RRset that does
not fit is left out whole. A missing answer or authority RRset sets TC, a missing
additional one does not (RFC 2181 section 9).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, NamedTuple

from skydns.record import Labels

from . import rr as T
from .rr import RR

HEADER = struct.Struct("!HHHHHH")
RR_FIXED = struct.Struct("!HHIH")
QUESTION = struct.Struct("!HH")
TTL = struct.Struct("!I")
SOA_TIMERS = struct.Struct("!IIII")

QR = 0x8000
OPCODE = 0x7800
AA = 0x0400
TC = 0x0200
RD = 0x0100
RA = 0x0080
CD = 0x0010

FORMERR = 1
BADVERS = 16
OPT_SIZE = 11
MIN_UDP = 512
MAX_TCP = 65535


class Drop(Exception):
    """Not a query we should answer at all (too short to have an ID, or a response)."""


class FormatError(Exception):
    """A malformed query; ``reply`` is the FORMERR to send back."""

    def __init__(self, reason: str, reply: bytes) -> None:
        super().__init__(reason)
        self.reply = reply


@dataclass(slots=True)
class Query:
    id: int
    flags: int
    qname: bytes  # the question name as received, so replies echo the client's case
    labels: Labels  # lower-case
    qtype: int
    qclass: int
    edns: bool = False
    edns_version: int = 0
    udp_size: int = MIN_UDP
    do: bool = False

    @property
    def opcode(self) -> int:
        return (self.flags & OPCODE) >> 11


def parse_query(data: bytes) -> Query:
    """Parse a query; raise Drop or FormatError."""
    if len(data) < HEADER.size:
        raise Drop("shorter than a DNS header")
    qid, flags, qdcount, ancount, nscount, arcount = HEADER.unpack_from(data)
    if flags & QR:
        raise Drop("a response, not a query")
    if qdcount != 1:
        raise FormatError(f"{qdcount} questions", error_reply(qid, flags, FORMERR))
    try:
        labels, qname, pos = _read_question_name(data, HEADER.size)
        qtype, qclass = QUESTION.unpack_from(data, pos)
        pos += 4
        query = Query(qid, flags, qname, labels, qtype, qclass)
        for _ in range(ancount + nscount):
            pos = _skip_rr(data, pos)
        for _ in range(arcount):
            pos = _read_additional(data, pos, query)
    except (struct.error, IndexError, ValueError) as exc:
        raise FormatError(str(exc) or "truncated", error_reply(qid, flags, FORMERR)) from None
    return query


def _read_question_name(data: bytes, pos: int) -> tuple[Labels, bytes, int]:
    start = pos
    labels: list[str] = []
    while True:
        length = data[pos]
        if length == 0:
            pos += 1
            break
        if length > 63:
            raise ValueError("compressed or extended label in the question")
        label = data[pos + 1 : pos + 1 + length]
        if len(label) != length:
            raise ValueError("truncated question name")
        labels.append(label.lower().decode("latin-1"))
        pos += 1 + length
    if pos - start > 255:
        raise ValueError("question name longer than 255 octets")
    return tuple(labels), data[start:pos], pos


def _skip_name(data: bytes, pos: int) -> int:
    while True:
        length = data[pos]
        if length == 0:
            return pos + 1
        if length >= 0xC0:
            data[pos + 1]
            return pos + 2
        if length > 63:
            raise ValueError("bad label type")
        pos += 1 + length


def _skip_rr(data: bytes, pos: int) -> int:
    pos = _skip_name(data, pos)
    rdlength: int = struct.unpack_from("!H", data, pos + 8)[0]
    end = pos + 10 + rdlength
    if end > len(data):
        raise ValueError("truncated record")
    return end


def _read_additional(data: bytes, pos: int, query: Query) -> int:
    owner = pos
    pos = _skip_name(data, pos)
    rtype: int
    rclass: int
    ttl: int
    rdlength: int
    rtype, rclass, ttl, rdlength = RR_FIXED.unpack_from(data, pos)
    end = pos + 10 + rdlength
    if end > len(data):
        raise ValueError("truncated record")
    if rtype == T.OPT:
        if query.edns:
            raise ValueError("more than one OPT record")
        if data[owner] != 0:
            raise ValueError("OPT record not owned by the root")
        query.edns = True
        query.udp_size = max(rclass, MIN_UDP)
        query.edns_version = (ttl >> 16) & 0xFF
        query.do = bool(ttl & 0x8000)
    return end


def error_reply(qid: int, flags: int, rcode: int, question: bytes = b"") -> bytes:
    """A reply with no records: header and, when known, the question."""
    out_flags = QR | (flags & (OPCODE | RD | CD)) | (rcode & 0xF)
    return HEADER.pack(qid, out_flags, 1 if question else 0, 0, 0, 0) + question


@dataclass(slots=True)
class Rendered:
    wire: bytes
    serial_at: int  # where the SOA serial sits in ``wire``, or -1
    truncated: bool


def reply_limit(query: Query, tcp: bool, max_udp: int) -> int:
    """Largest reply we may send: RFC 6891 section 6.2.5, and no more than 64 KiB on TCP."""
    if tcp:
        return MAX_TCP
    if not query.edns:
        return MIN_UDP
    return max(MIN_UDP, min(query.udp_size, max_udp))


def render(
    query: Query,
    rcode: int,
    sections: tuple[list[list[RR]], list[list[RR]], list[list[RR]]],
    *,
    limit: int,
    aa: bool,
    ra: bool,
    max_udp: int,
) -> Rendered:
    """Render a reply to ``query`` from RRsets for answer, authority and additional."""
    w = _Writer(query)
    opt = OPT_SIZE if query.edns else 0
    counts = [0, 0, 0]
    truncated = False
    for index, rrsets in enumerate(sections):
        for rrset in rrsets:
            mark = w.mark()
            for record in rrset:
                w.rr(record)
            if len(w.buf) + opt > limit:
                w.rollback(mark)
                truncated = index < 2
                break
            counts[index] += len(rrset)
        else:
            continue
        break
    if query.edns:
        ext_rcode, version = rcode >> 4, 0
        ttl = (ext_rcode << 24) | (version << 16) | (0x8000 if query.do else 0)
        w.buf += b"\x00" + RR_FIXED.pack(T.OPT, max_udp, ttl, 0)
    flags = QR | (query.flags & (OPCODE | RD | CD)) | (rcode & 0xF)
    flags |= (AA if aa else 0) | (RA if ra else 0) | (TC if truncated else 0)
    HEADER.pack_into(w.buf, 0, query.id, flags, 1, counts[0], counts[1], counts[2] + bool(opt))
    return Rendered(bytes(w.buf), w.serial_at, truncated)


class _Writer:
    __slots__ = ("buf", "names", "serial_at")

    def __init__(self, query: Query) -> None:
        self.buf = bytearray(HEADER.size)
        self.names: dict[Labels, int] = {}
        self.serial_at = -1
        offset = HEADER.size
        for i in range(len(query.labels)):
            self.names[query.labels[i:]] = offset
            offset += 1 + len(query.labels[i])
        self.buf += query.qname
        self.buf += struct.pack("!HH", query.qtype, query.qclass)

    def mark(self) -> int:
        return len(self.buf)

    def rollback(self, mark: int) -> None:
        del self.buf[mark:]
        self.names = {k: v for k, v in self.names.items() if v < mark}
        if self.serial_at >= mark:
            self.serial_at = -1

    def name(self, labels: Labels, compress: bool = True) -> None:
        for i in range(len(labels)):
            suffix = labels[i:]
            if compress:
                pointer = self.names.get(suffix)
                if pointer is not None:
                    self.buf += struct.pack("!H", 0xC000 | pointer)
                    return
            if len(self.buf) < 0x3FFF:
                self.names.setdefault(suffix, len(self.buf))
            raw = labels[i].encode("latin-1")
            self.buf.append(len(raw))
            self.buf += raw
        self.buf.append(0)

    def rr(self, record: RR) -> None:
        self.name(record.owner)
        self.buf += RR_FIXED.pack(record.rtype, T.CLASS_IN, record.ttl, 0)
        start = len(self.buf)
        self._rdata(record.rtype, record.rdata)
        struct.pack_into("!H", self.buf, start - 2, len(self.buf) - start)

    def _rdata(self, rtype: int, rdata: tuple[Any, ...]) -> None:
        if rtype in (T.A, T.AAAA):
            self.buf += rdata[0]
        elif rtype in (T.CNAME, T.NS, T.PTR):
            self.name(rdata[0])
        elif rtype == T.MX:
            self.buf += struct.pack("!H", rdata[0])
            self.name(rdata[1])
        elif rtype == T.SRV:
            self.buf += struct.pack("!HHH", rdata[0], rdata[1], rdata[2])
            self.name(rdata[3], compress=False)  # RFC 2782
        elif rtype == T.TXT:
            for chunk in rdata:
                self.buf.append(len(chunk))
                self.buf += chunk
        elif rtype == T.SOA:
            mname, rname, *timers = rdata
            self.name(mname)
            self.name(rname)
            self.serial_at = len(self.buf)
            self.buf += b"\x00\x00\x00\x00" + SOA_TIMERS.pack(*timers)
        else:
            raise ValueError(f"cannot render record type {rtype}")


# -- talking to upstream servers -------------------------------------------------------

AD = 0x0020


def build_query(
    qid: int, qname: bytes, qtype: int, qclass: int, *, flags: int, do: bool, udp_size: int
) -> bytes:
    """A query with one question and an OPT record (we always speak EDNS upstream)."""
    head = HEADER.pack(qid, flags & (RD | CD), 1, 0, 0, 1)
    opt = b"\x00" + RR_FIXED.pack(T.OPT, udp_size, 0x8000 if do else 0, 0)
    return head + qname + struct.pack("!HH", qtype, qclass) + opt


class Span(NamedTuple):
    """Where one record sits in a message."""

    section: int  # 0 answer, 1 authority, 2 additional
    start: int
    rtype: int
    ttl: int
    ttl_at: int
    rdata_at: int
    end: int


@dataclass(slots=True)
class Response:
    data: bytes
    id: int
    flags: int
    qname: bytes  # as the upstream spelled it
    qtype: int
    qclass: int
    spans: list[Span]  # every record but the OPT, in message order
    opt: Span | None
    counts: tuple[int, int, int]  # records per section in ``spans``

    @property
    def rcode(self) -> int:
        ext = (self.opt.ttl >> 24) << 4 if self.opt is not None else 0
        return ext | (self.flags & 0xF)


def parse_response(data: bytes) -> Response:
    """Parse an upstream reply far enough to check, cache and relay it (ValueError if bad)."""
    try:
        qid, flags, qdcount, ancount, nscount, arcount = HEADER.unpack_from(data)
        if not flags & QR or qdcount != 1:
            raise ValueError("not a reply to one question")
        pos = _skip_name(data, HEADER.size)
        qname = data[HEADER.size : pos]
        qtype, qclass = QUESTION.unpack_from(data, pos)
        pos += 4
        spans: list[Span] = []
        opt = None
        size = len(data)
        unpack = RR_FIXED.unpack_from
        for section, count in ((0, ancount), (1, nscount), (2, arcount)):
            for _ in range(count):
                start = pos
                pos = _skip_name(data, pos)
                rtype, _, ttl, rdlen = unpack(data, pos)
                end = pos + 10 + rdlen
                if end > size:
                    raise ValueError("truncated record")
                span = _span(Span, (section, start, rtype, ttl, pos + 4, pos + 10, end))
                if rtype != T.OPT:
                    spans.append(span)
                elif opt is not None or section != 2:
                    raise ValueError("more than one OPT record, or one outside additional")
                else:
                    opt = span
                pos = end
    except (struct.error, IndexError) as exc:
        raise ValueError(f"malformed reply: {exc}") from None
    counts = (ancount, nscount, arcount - 1) if opt is not None else (ancount, nscount, arcount)
    return Response(data, qid, flags, qname, qtype, qclass, spans, opt, counts)


_span = tuple.__new__  # a Span without NamedTuple's argument handling: one per record


def negative_ttl(resp: Response) -> int | None:
    """RFC 2308: min(SOA TTL, SOA MINIMUM) of the authority SOA, or None without one."""
    for span in resp.spans:
        if span.section == 1 and span.rtype == T.SOA:
            minimum: int = struct.unpack_from("!I", resp.data, span.end - 4)[0]
            return min(span.ttl, minimum)
    return None


def relay(
    resp: Response, query: Query, *, limit: int, max_udp: int, age: int = 0,
    fixed_ttl: int | None = None, max_ttl: int | None = None, rotate: int = 0,
) -> bytes:
    """An upstream reply re-addressed to our client.

    The client's ID, question spelling, RD and CD are restored; TTLs are lowered by ``age``
    seconds and capped at ``max_ttl`` (or all set to ``fixed_ttl`` for stale answers); the
    upstream's OPT is replaced by ours when the client spoke EDNS, and removed when it did
    not; address RRsets are rotated by ``rotate`` places. A reply that does not fit the
    client's limit is cut to the question with TC set.
    """
    data = resp.data
    cut = resp.opt.start if resp.opt is not None else len(data)
    spans, counts = resp.spans, resp.counts
    if spans and spans[-1].end > cut:  # records after the OPT are dropped with it
        spans = [s for s in spans if s.end <= cut]
        counts = (sum(s.section == 0 for s in spans), sum(s.section == 1 for s in spans),
                  sum(s.section == 2 for s in spans))
    question_end = HEADER.size + len(resp.qname) + 4
    if age or fixed_ttl is not None or max_ttl is not None or rotate:
        records: bytes | bytearray = _rewrite(data, spans, cut, age, fixed_ttl, max_ttl,
                                               rotate)[question_end:]
    else:
        records = data[question_end:cut]
    flags = (resp.flags & ~(RD | CD | TC | 0xF)) | (query.flags & (RD | CD)) | RA
    rcode = resp.rcode
    opt = b""
    if query.edns:
        ttl = ((rcode >> 4) << 24) | (0x8000 if query.do else 0)
        opt = b"\x00" + RR_FIXED.pack(T.OPT, max_udp, ttl, 0)
    an, ns, ar = counts
    if cut + len(opt) > limit:
        records, flags, an, ns, ar = b"", flags | TC, 0, 0, 0
    head = HEADER.pack(query.id, flags | (rcode & 0xF), 1, an, ns, ar + bool(opt))
    return head + query.qname + data[question_end - 4 : question_end] + records + opt


def _rewrite(data: bytes, spans: list[Span], cut: int, age: int, fixed_ttl: int | None,
             max_ttl: int | None, rotate: int) -> bytearray:
    """The reply up to ``cut`` with its TTLs changed and its address RRsets rotated."""
    out = bytearray(data[:cut])
    if age or fixed_ttl is not None or max_ttl is not None:
        for s in spans:
            ttl = fixed_ttl if fixed_ttl is not None else max(0, s.ttl - age)
            if max_ttl is not None:
                ttl = min(ttl, max_ttl)
            TTL.pack_into(out, s.ttl_at, ttl)
    if rotate:
        for run in _address_runs(data, spans):
            k = rotate % len(run)
            pieces = [out[s.start : s.end] for s in run]
            out[run[0].start : run[-1].end] = b"".join(pieces[k:] + pieces[:k])
    return out


def _address_runs(data: bytes, spans: list[Span]) -> list[list[Span]]:
    """Adjacent answer A/AAAA records of one type that can be reordered as byte blocks.

    Only records whose owner is a compression pointer qualify: then no other name can
    point into them, and their rdata holds no names, so moving them breaks nothing.
    """
    runs: list[list[Span]] = []
    run: list[Span] = []
    for s in spans:
        movable = s.section == 0 and s.rtype in (T.A, T.AAAA) and data[s.start] >= 0xC0
        if movable and run and run[-1].rtype == s.rtype and run[-1].end == s.start:
            run.append(s)
            continue
        if len(run) > 1:
            runs.append(run)
        run = [s] if movable else []
    if len(run) > 1:
        runs.append(run)
    return runs


def rotations(resp: Response) -> int:
    """How many distinct rotations the reply's address RRsets allow (1: none)."""
    if resp.data[7] < 2 and not resp.data[6]:  # fewer than two answers: nothing to rotate
        return 1
    return max((len(r) for r in _address_runs(resp.data, resp.spans)), default=1)


def encode_name(labels: Labels) -> bytes:
    """Labels as an uncompressed wire name."""
    raw = [x.encode("latin-1") for x in labels]
    return b"".join(bytes([len(x)]) + x for x in raw) + b"\0"


def read_name(data: bytes, pos: int) -> tuple[Labels, int]:
    """A possibly compressed name and the position after it (RFC 1035 section 4.1.4)."""
    labels: list[str] = []
    end = -1
    for _ in range(128):  # bounds pointer loops
        length = data[pos]
        if length == 0:
            return tuple(labels), (end if end >= 0 else pos + 1)
        if length >= 0xC0:
            if end < 0:
                end = pos + 2
            pos = ((length & 0x3F) << 8) | data[pos + 1]
            continue
        labels.append(data[pos + 1 : pos + 1 + length].lower().decode("latin-1"))
        pos += 1 + length
    raise ValueError("name compression loop")


def answer_records(resp: Response) -> list[RR]:
    """The answer section as RRs (A, AAAA, CNAME, PTR, TXT, MX, SRV), for merging."""
    out: list[RR] = []
    data = resp.data
    for s in resp.spans:
        if s.section != 0:
            continue
        owner, _ = read_name(data, s.start)
        rdata: tuple[Any, ...] | None = None
        if s.rtype in (T.A, T.AAAA):
            rdata = (data[s.rdata_at : s.end],)
        elif s.rtype in (T.CNAME, T.PTR):
            rdata = (read_name(data, s.rdata_at)[0],)
        elif s.rtype == T.MX:
            pref = struct.unpack_from("!H", data, s.rdata_at)[0]
            rdata = (pref, read_name(data, s.rdata_at + 2)[0])
        elif s.rtype == T.SRV:
            prio, weight, port = struct.unpack_from("!HHH", data, s.rdata_at)
            rdata = (prio, weight, port, read_name(data, s.rdata_at + 6)[0])
        elif s.rtype == T.TXT:
            strings, pos = [], s.rdata_at
            while pos < s.end:
                strings.append(data[pos + 1 : pos + 1 + data[pos]])
                pos += 1 + data[pos]
            rdata = tuple(strings)
        if rdata is not None:
            out.append(RR(owner, s.rtype, s.ttl, rdata))
    return out
