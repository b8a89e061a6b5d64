"""EDNS options in raw messages: read one from a query, add one to a reply, cut a reply
down to a truncated one.

These work on bytes a stage already has (the query as received, a rendered or cached
reply), so response-side stages (cookies, rate limiting, ACLs) need no re-render and work
the same on answers served from the answer cache.
"""

from __future__ import annotations

import struct

from .constants import HEADER, OPT, QUESTION, RR_FIXED, TC
from .query import skip_name

COOKIE = 10  # RFC 7873
TCP_KEEPALIVE = 11  # RFC 7828
EDE = 15  # RFC 8914
BADCOOKIE = 23  # RFC 7873: an extended rcode (1 in the OPT TTL, 7 in the header)
PROHIBITED = 18  # the EDE info-code for a query refused by policy

OPTION = struct.Struct("!HH")


def opt_span(msg: bytes) -> tuple[int, int] | None:
    """Where the OPT record sits in ``msg``: (start of the record, end of its RDATA)."""
    _, _, qdcount, ancount, nscount, arcount = HEADER.unpack_from(msg)
    pos = HEADER.size
    for _ in range(qdcount):
        pos = skip_name(msg, pos) + QUESTION.size
    for i in range(ancount + nscount + arcount):
        start = pos
        pos = skip_name(msg, pos)
        rtype, _, _, rdlength = RR_FIXED.unpack_from(msg, pos)
        pos += RR_FIXED.size + rdlength
        if pos > len(msg):
            raise ValueError("truncated record")
        if rtype == OPT and i >= ancount + nscount:
            return start, pos
    return None


def find_option(msg: bytes, code: int) -> bytes | None:
    """The data of the first ``code`` option in the message's OPT record, or None.
    Raises ValueError if the OPT RDATA is not a well-formed option list."""
    span = opt_span(msg)
    if span is None:
        return None
    start, end = span
    pos = skip_name(msg, start) + RR_FIXED.size
    found = None
    while pos < end:
        if pos + OPTION.size > end:
            raise ValueError("truncated EDNS option")
        opt_code, length = OPTION.unpack_from(msg, pos)
        pos += OPTION.size
        if pos + length > end:
            raise ValueError("EDNS option longer than its OPT record")
        if opt_code == code and found is None:
            found = msg[pos : pos + length]
        pos += length
    return found


def add_option(reply: bytes, code: int, data: bytes) -> bytes:
    """The reply with one more option in its OPT record (unchanged if it has none)."""
    span = opt_span(reply)
    if span is None:
        return reply
    start, end = span
    rdlength_at = skip_name(reply, start) + RR_FIXED.size - 2
    rdlength = struct.unpack_from("!H", reply, rdlength_at)[0] + OPTION.size + len(data)
    return (reply[:rdlength_at] + struct.pack("!H", rdlength) + reply[rdlength_at + 2 : end]
            + OPTION.pack(code, len(data)) + data + reply[end:])


def truncated(reply: bytes) -> bytes:
    """The reply cut to its header (with TC), question and OPT record: what a client that
    must retry over TCP (or come back later) gets."""
    qid, flags, qdcount, _, _, _ = HEADER.unpack_from(reply)
    pos = HEADER.size
    for _ in range(qdcount):
        pos = skip_name(reply, pos) + QUESTION.size
    span = opt_span(reply)
    opt = reply[span[0] : span[1]] if span is not None else b""
    header = HEADER.pack(qid, flags | TC, qdcount, 0, 0, 1 if opt else 0)
    return header + reply[HEADER.size : pos] + opt


def ede(info_code: int, text: str = "") -> bytes:
    """An Extended DNS Error option's data (RFC 8914)."""
    return struct.pack("!H", info_code) + text.encode()
