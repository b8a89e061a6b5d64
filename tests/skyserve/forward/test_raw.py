"""``forward.raw.plain_reply`` read against replies built by hand, and the query IDs drawn
from the OS's random pool (``forward.sockets.random_id``)."""

from __future__ import annotations

import struct

import pytest

from skyserve.forward.raw import plain_reply
from skyserve.forward.sockets import random_id
from skyserve.wire.query import encode_name

QNAME = encode_name(("www", "example", "org"))
QUESTION = QNAME + struct.pack("!HH", 1, 1)
ADDRESS = struct.pack("!HHIH", 1, 1, 60, 4) + bytes((192, 0, 2, 1))
OPT = b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 0)


def reply(*records: bytes, additional: int = 0) -> bytes:
    """A NOERROR reply to ``QUESTION`` with ``records`` (the last ``additional`` of them in
    the additional section, the rest answers)."""
    head = struct.pack("!HHHHHH", 7, 0x8180, 1, len(records) - additional, 0, additional)
    return head + QUESTION + b"".join(records)


@pytest.mark.parametrize("owner", [b"\xc0\x0c", QNAME, b"\x03www\xc0\x10"],
                         ids=["pointer", "full name", "label then pointer"])
def test_the_opt_is_found_whatever_the_owner_names_look_like(owner: bytes) -> None:
    data = reply(owner + ADDRESS, OPT, additional=1)
    assert plain_reply(data, QUESTION) == len(data) - len(OPT)
    no_opt = reply(owner + ADDRESS)
    assert plain_reply(no_opt, QUESTION) == len(no_opt)


@pytest.mark.parametrize("data", [
    reply(b"\xc0" + ADDRESS[:0]),  # a pointer cut in half
    reply(b"\x40abc" + ADDRESS),  # an extended label type
    reply(b"\xc0\x0c" + ADDRESS[:-1]),  # rdata cut short
    reply(b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 0)),  # an OPT among the answers
], ids=["cut pointer", "extended label", "short rdata", "opt as an answer"])
def test_a_malformed_or_odd_reply_is_left_to_the_full_parse(data: bytes) -> None:
    assert plain_reply(data, QUESTION) == -1


def test_query_ids_use_all_sixteen_bits() -> None:
    ids = [random_id() for _ in range(4096)]
    assert all(0 <= i <= 0xFFFF for i in ids)
    assert max(ids) > 0xFF and max(ids) >> 8 != min(ids) >> 8  # both bytes random
    assert len(set(ids)) > 3000  # 4096 draws of 65536 repeat ~120 times
