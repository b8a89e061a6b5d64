"""Upstream queries and replies as raw bytes: queries from parts made once per shape,
replies relayed without parsing them into records.

Most replies to a forwarded query have one shape: one question, spelled as we asked it,
an rcode that is the answer (not SERVFAIL or REFUSED, no extended rcode), not truncated,
and no record after the OPT (if any). ``relay`` would copy such a reply's records
unchanged (when nothing ages or rotates them) and swap its header and OPT, so a caller
that wants nothing else of the reply (no cache to store it in) needs only where the OPT
starts. ``plain_reply`` checks that shape, and that the records are well formed, as
``parse_response`` would; anything else is left to the full parse.
"""

from __future__ import annotations

import struct
from typing import Protocol

from ..wire import constants as T
from ..wire.constants import CD, QR, RD, RR_FIXED, TC
from ..wire.query import skip_name
from ..wire.response import build_query
from .cache import Key

# QR, TC and the rcode bits: a reply that is not truncated; its rcode is checked apart.
SHAPE = QR | TC
NOT_ANSWERS = frozenset((T.SERVFAIL, T.REFUSED))  # move on to the next upstream


class QueryBodies:
    """``build_query``'s bytes after the ID, from a head and a tail made once per
    (RD and CD, type, class, DO)."""

    def __init__(self, udp_size: int) -> None:
        self.udp_size = udp_size
        self._parts: dict[tuple[int, int, int, bool], tuple[bytes, bytes]] = {}

    def body(self, key: Key, qname: bytes, flags: int) -> bytes:
        shape = (flags & (RD | CD), key.qtype, key.qclass, key.do)
        parts = self._parts.get(shape)
        if parts is None:  # the query for the root name, cut around its one zero byte
            query = build_query(0, b"\x00", key.qtype, key.qclass, flags=flags, do=key.do,
                                udp_size=self.udp_size)
            parts = self._parts[shape] = (query[2:12], query[13:])
        return parts[0] + qname + parts[1]


class RawRelay(Protocol):
    """Who takes a plain reply's bytes (``Attempt.raw``)."""

    def fits(self, data: bytes, cut: int) -> bool:
        """Whether the reply can go to the client as its raw records (else it is parsed)."""

    def relay(self, data: bytes, cut: int) -> None:
        """Send the client the reply: its header and question, ``data[12:cut]``'s records
        (``cut`` is where the upstream's OPT starts, or the end), our OPT."""


def plain_reply(data: bytes, question: bytes) -> int:
    """Where the reply's OPT starts (its length when it has none), if it is of the plain
    shape and answers ``question`` (name, type and class as we sent them); else -1."""
    try:
        if (data[2] << 8 | data[3]) & SHAPE != QR or (data[3] & 0xF) in NOT_ANSWERS \
                or data[4] or data[5] != 1:
            return -1
        pos = 12 + len(question)
        if data[12:pos] != question:
            return -1  # another spelling (the full check takes it) or another question
        total = (data[6] << 8 | data[7]) + (data[8] << 8 | data[9]) + (data[10] << 8 | data[11])
        size = len(data)
        unpack = RR_FIXED.unpack_from
        for i in range(total):
            start = pos
            first = data[pos]  # most owners are a pointer (to the question) or the root
            pos = pos + 2 if first >= 0xC0 else pos + 1 if not first else skip_name(data, pos)
            rtype, _, ttl, rdlen = unpack(data, pos)  # struct.error past the end
            pos += 10 + rdlen
            if pos > size:
                return -1
            if rtype == T.OPT:
                # the last record, in the additional section, with no extended rcode
                if i != total - 1 or (not data[11] and not data[10]) or ttl >> 24:
                    return -1
                return start
    except (IndexError, ValueError, struct.error):
        return -1
    return size
