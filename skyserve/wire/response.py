"""Replies from upstream servers: build our query, parse the reply, relay it to a client.

An upstream reply is parsed once into record spans (where each record sits), so it can be
checked, cached and re-addressed to many clients without being decoded again.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, NamedTuple

from . import constants as T
from .constants import CD, HEADER, QR, QUESTION, RA, RD, RR_FIXED, TC, TTL
from .query import Query, read_name, skip_name
from .rr import RR


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
        pos = skip_name(data, HEADER.size)
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
                pos = skip_name(data, pos)
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
    options: bytes = b"",
) -> bytes:
    """An upstream reply re-addressed to our client.

    The client's ID, question spelling, RD and CD are restored; TTLs are lowered by ``age``
    seconds and capped at ``max_ttl`` (or all set to ``fixed_ttl`` for stale answers); the
    upstream's OPT is replaced by ours (holding ``options``) when the client spoke EDNS,
    and removed when it did not; address RRsets are rotated by ``rotate`` places. A reply
    that does not fit the client's limit is cut to the question with TC set.
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
        opt = b"\x00" + RR_FIXED.pack(T.OPT, max_udp, ttl, len(options)) + options
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


def section_records(resp: Response, section: int) -> list[RR]:
    """One section's records as RRs (A, AAAA, CNAME, PTR, TXT, MX, SRV, SOA), for merging
    into an answer of ours; other types are left out."""
    out: list[RR] = []
    data = resp.data
    for s in resp.spans:
        if s.section == section:
            rdata = _rdata(data, s)
            if rdata is not None:
                out.append(RR(read_name(data, s.start)[0], s.rtype, s.ttl, rdata))
    return out


def _rdata(data: bytes, s: Span) -> tuple[Any, ...] | None:
    if s.rtype in (T.A, T.AAAA):
        return (data[s.rdata_at : s.end],)
    if s.rtype in (T.CNAME, T.PTR):
        return (read_name(data, s.rdata_at)[0],)
    if s.rtype == T.MX:
        return (struct.unpack_from("!H", data, s.rdata_at)[0], read_name(data, s.rdata_at + 2)[0])
    if s.rtype == T.SRV:
        prio, weight, port = struct.unpack_from("!HHH", data, s.rdata_at)
        return (prio, weight, port, read_name(data, s.rdata_at + 6)[0])
    if s.rtype == T.TXT:
        strings, pos = [], s.rdata_at
        while pos < s.end:
            strings.append(data[pos + 1 : pos + 1 + data[pos]])
            pos += 1 + data[pos]
        return tuple(strings)
    if s.rtype == T.SOA:
        mname, pos = read_name(data, s.rdata_at)
        rname, pos = read_name(data, pos)
        serial, *timers = struct.unpack_from("!IIIII", data, pos)
        return (mname, rname, serial, *timers)  # a serial of its own: see wire.rr
    return None
