"""Replies from our own data: RRsets rendered with name compression.

An RRset that does not fit is left out whole. A missing answer or authority RRset sets TC,
a missing additional one does not (RFC 2181 section 9).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from skydns.record import Labels

from . import constants as T
from .constants import AA, CD, HEADER, OPCODE, OPT_SIZE, QR, RA, RD, RR_FIXED, SOA_TIMERS, TC, TTL
from .query import Query
from .rr import RR


@dataclass(slots=True)
class Rendered:
    wire: bytes
    serial_at: int  # where the SOA serial sits in ``wire``, or -1
    truncated: bool


def render(
    query: Query,
    rcode: int,
    sections: tuple[list[list[RR]], list[list[RR]], list[list[RR]]],
    *,
    limit: int,
    aa: bool,
    ra: bool,
    max_udp: int,
    options: bytes = b"",
) -> Rendered:
    """Render a reply to ``query`` from RRsets for answer, authority and additional;
    ``options`` (EDNS options, e.g. NSID, EDE) go in our OPT when the client sent one."""
    w = _Writer(query)
    opt = OPT_SIZE + len(options) if query.edns else 0
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
        w.buf += b"\x00" + RR_FIXED.pack(T.OPT, max_udp, ttl, len(options)) + options
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
        if rtype in (T.A, T.AAAA) or rtype in T.OPAQUE:
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
            if len(timers) == 5:  # the serial given (zone transfers): written as it is
                self.buf += TTL.pack(timers.pop(0))
            else:
                self.serial_at = len(self.buf)
                self.buf += b"\x00\x00\x00\x00"
            self.buf += SOA_TIMERS.pack(*timers)
        else:
            raise ValueError(f"cannot render record type {rtype}")
