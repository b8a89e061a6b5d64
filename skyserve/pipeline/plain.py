"""The plain query shape, read from raw bytes: what the direct stage (1b) and forwarding
at once (1c) answer without a parse.

A plain query is one question of class IN, with no other records but a plain OPT; the
question name is read into lower-case labels (Latin-1 text, as the index's labels are
compared). Anything else (a response, another opcode, other records, a compressed or
over-long name, NSID) is for the general path.
"""

from __future__ import annotations

from skydns.record import Labels

from ..wire import constants as T
from ..wire.constants import HEADER

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


