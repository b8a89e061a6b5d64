"""Incoming queries: parse one far enough to answer it, and the replies that need no data.

Only what a server needs is parsed: the header, the one question, and the OPT record
(RFC 6891).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from skydns.record import Labels

from .constants import (
    CD,
    FORMERR,
    HEADER,
    MAX_TCP,
    MIN_UDP,
    NOTIMP,
    OPCODE,
    OPT,
    OPT_EDE,
    OPT_NSID,
    QR,
    QUESTION,
    RD,
    RR_FIXED,
)


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
    nsid: bool = False  # the client asked for our NSID (RFC 5001)

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
        # An opcode we do not implement is NOTIMP whatever the message holds (RFC 8906 8.1).
        rcode = NOTIMP if flags & OPCODE else FORMERR
        raise FormatError(f"{qdcount} questions", error_reply(qid, flags, rcode))
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


def skip_name(data: bytes, pos: int) -> int:
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
    pos = skip_name(data, pos)
    rdlength: int = struct.unpack_from("!H", data, pos + 8)[0]
    end = pos + 10 + rdlength
    if end > len(data):
        raise ValueError("truncated record")
    return end


def _read_additional(data: bytes, pos: int, query: Query) -> int:
    owner = pos
    pos = skip_name(data, pos)
    rtype: int
    rclass: int
    ttl: int
    rdlength: int
    rtype, rclass, ttl, rdlength = RR_FIXED.unpack_from(data, pos)
    end = pos + 10 + rdlength
    if end > len(data):
        raise ValueError("truncated record")
    if rtype == OPT:
        if query.edns:
            raise ValueError("more than one OPT record")
        if data[owner] != 0:
            raise ValueError("OPT record not owned by the root")
        query.edns = True
        query.udp_size = max(rclass, MIN_UDP)
        query.edns_version = (ttl >> 16) & 0xFF
        query.do = bool(ttl & 0x8000)
        if rdlength:
            query.nsid = _has_option(data, pos + 10, end, OPT_NSID)
    return end


def _has_option(data: bytes, pos: int, end: int, code: int) -> bool:
    """Whether the OPT rdata between ``pos`` and ``end`` holds option ``code``."""
    found = False
    while pos < end:
        if pos + 4 > end:
            raise ValueError("truncated EDNS option")
        option, length = struct.unpack_from("!HH", data, pos)
        found = found or option == code
        pos += 4 + length
    if pos != end:
        raise ValueError("EDNS option longer than its OPT record")
    return found


def edns_option(code: int, data: bytes) -> bytes:
    """One EDNS option, as it goes in OPT rdata."""
    return struct.pack("!HH", code, len(data)) + data


def ede_option(info_code: int, text: str = "") -> bytes:
    """An Extended DNS Error (RFC 8914): the info-code and optional UTF-8 text."""
    return edns_option(OPT_EDE, struct.pack("!H", info_code) + text.encode())


def error_reply(qid: int, flags: int, rcode: int, question: bytes = b"") -> bytes:
    """A reply with no records: header and, when known, the question."""
    out_flags = QR | (flags & (OPCODE | RD | CD)) | (rcode & 0xF)
    return HEADER.pack(qid, out_flags, 1 if question else 0, 0, 0, 0) + question


def reply_limit(query: Query, tcp: bool, max_udp: int) -> int:
    """Largest reply we may send: RFC 6891 section 6.2.5, and no more than 64 KiB on TCP."""
    if tcp:
        return MAX_TCP
    if not query.edns:
        return MIN_UDP
    return max(MIN_UDP, min(query.udp_size, max_udp))


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




def failure_reply(data: bytes, rcode: int) -> bytes | None:
    """A reply with ``rcode`` to raw query bytes that may not even parse: the question is
    echoed when it can be read, and nothing is sent for what is not a query at all."""
    if len(data) < HEADER.size:
        return None
    qid, flags, qdcount = struct.unpack_from("!HHH", data)
    if flags & QR:
        return None
    question_bytes = b""
    if qdcount == 1:
        found = question(data)
        if found is not None:
            question_bytes = found[0] + QUESTION.pack(found[1], found[2])
    return error_reply(qid, flags, rcode, question_bytes)


def question(msg: bytes) -> tuple[bytes, int, int] | None:
    """The first question of any message (name as sent, type, class), if it has one."""
    if len(msg) < HEADER.size or not msg[4] | msg[5]:
        return None
    try:
        _, qname, pos = _read_question_name(msg, HEADER.size)
        qtype, qclass = QUESTION.unpack_from(msg, pos)
    except (IndexError, ValueError, struct.error):
        return None
    return qname, qtype, qclass


def name_text(qname: bytes) -> str:
    """A wire name in RFC 1035 presentation form, with every special byte escaped, so a
    name shown in a log line can never split or forge the line."""
    out, pos = [], 0
    while pos < len(qname) and qname[pos]:
        label = qname[pos + 1 : pos + 1 + qname[pos]]
        out.append("".join(_escape(b) for b in label))
        pos += 1 + qname[pos]
    return ".".join(out) + "."


def _escape(byte: int) -> str:
    if chr(byte) in '."\\;()$@':
        return "\\" + chr(byte)
    if byte < 0x21 or byte > 0x7E:
        return f"\\{byte:03d}"
    return chr(byte)
