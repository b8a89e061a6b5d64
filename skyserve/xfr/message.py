"""Transfer messages on the wire: many records in as many messages as needed, refusals
with an extended error, and the client's serial out of an IXFR request.

Each message is rendered by the ordinary ``wire.render`` (so names are compressed the same
way), with the same ID and the question, AA set, at most ``MESSAGE_SIZE`` bytes; the TC
bit ``render`` sets when more records remain is cleared, since they follow in the next
message. With a key, each message is signed in turn (``tsig.Signer``).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence

from ..lookup import Authority, Zone
from ..wire import constants as T
from ..wire.constants import HEADER, MAX_TCP, NOERROR, TC
from ..wire.query import Query, skip_name
from ..wire.render import render
from ..wire.rr import RR
from .tsig import Signer

MESSAGE_SIZE = 16384
TSIG_ROOM = 256  # a TSIG record with its names and a SHA-256 MAC fits in this
WINDOW = 1024  # records offered to one render; a message holds fewer
EDE = 15  # the EDNS option code of an extended DNS error (RFC 8914)
PROHIBITED, NOT_READY, NOT_SUPPORTED, NOT_AUTHORITATIVE = 18, 14, 21, 20


def soa(authority: Authority, zone: Zone, serial: int) -> RR:
    """The zone's SOA with its serial written in."""
    rr = authority.soa(zone)
    mname, rname, *timers = rr.rdata
    return rr._replace(rdata=(mname, rname, serial, *timers))


def messages(query: Query, records: Sequence[RR], signer: Signer | None,
             ra: bool) -> Iterator[bytes]:
    """The reply to a transfer request: every record, in order, over several messages."""
    limit = MESSAGE_SIZE - (TSIG_ROOM if signer is not None else 0)
    pos = 0
    while pos < len(records):
        window = [[rr] for rr in records[pos : pos + WINDOW]]
        wire = render(query, NOERROR, (window, [], []), limit=limit, aa=True, ra=ra,
                      max_udp=MAX_TCP).wire
        count = struct.unpack_from("!H", wire, 6)[0]
        if count == 0:  # one record larger than a message: it gets a message of its own
            wire = render(query, NOERROR, (window[:1], [], []), limit=MAX_TCP - TSIG_ROOM,
                          aa=True, ra=ra, max_udp=MAX_TCP).wire
            count = 1
        pos += count
        out = bytearray(wire)
        out[2] &= ~(TC >> 8) & 0xFF
        yield _signed(bytes(out), signer)


def error(query: Query, rcode: int, ede: int | None, text: str, signer: Signer | None,
          ra: bool) -> bytes:
    """A reply with no records, with an extended DNS error when the query has EDNS."""
    wire = render(query, rcode, ([], [], []), limit=MAX_TCP, aa=False, ra=ra,
                  max_udp=MAX_TCP).wire
    if query.edns and ede is not None:
        info = text.encode()
        option = struct.pack("!HHH", EDE, 2 + len(info), ede) + info
        wire = wire[:-2] + struct.pack("!H", len(option)) + option  # the OPT is last
    return _signed(wire, signer)


def _signed(wire: bytes, signer: Signer | None) -> bytes:
    return wire if signer is None else signer.sign(wire)


def client_serial(data: bytes) -> int | None:
    """The serial of the SOA in an IXFR request's authority section (RFC 1995 section 3)."""
    try:
        _, _, qd, an, ns, _ = HEADER.unpack_from(data)
        pos = HEADER.size
        for _ in range(qd):
            pos = skip_name(data, pos) + 4
        for _ in range(an):
            pos = skip_name(data, pos)
            pos += 10 + struct.unpack_from("!H", data, pos + 8)[0]
        if ns == 0:
            return None
        pos = skip_name(data, pos)
        if struct.unpack_from("!H", data, pos)[0] != T.SOA:
            return None
        pos = skip_name(data, skip_name(data, pos + 10))
        value: int = struct.unpack_from("!I", data, pos)[0]
        return value
    except (IndexError, ValueError, struct.error):
        return None
