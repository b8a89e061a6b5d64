"""RRsets in the canonical form that is signed (RFC 4034 sections 3.1.8.1 and 6).

Owner and RDATA names lowercase and uncompressed, RRs sorted by their canonical RDATA,
one TTL (the RRset's original TTL). The SOA serial is not in the lookup's SOA rdata (the
answer cache adds it on the wire), so it is passed in.
"""

from __future__ import annotations

import struct
from typing import Any

from skydns.record import Labels

from ..wire import constants as T
from ..wire.rr import RR

SOA_FIXED = struct.Struct("!IIIII")
RR_HEAD = struct.Struct("!HHIH")


def wire_name(labels: Labels) -> bytes:
    out = bytearray()
    for label in labels:
        raw = label.encode("latin-1").lower()  # ASCII only, as DNS compares
        out.append(len(raw))
        out += raw
    out.append(0)
    return bytes(out)


def rdata_wire(rtype: int, rdata: tuple[Any, ...], serial: int) -> bytes:
    """The canonical RDATA of one record."""
    if rtype in (T.A, T.AAAA) or rtype in T.OPAQUE:
        return bytes(rdata[0])
    if rtype in (T.CNAME, T.NS, T.PTR):
        return wire_name(rdata[0])
    if rtype == T.MX:
        return struct.pack("!H", rdata[0]) + wire_name(rdata[1])
    if rtype == T.SRV:
        return struct.pack("!HHH", *rdata[:3]) + wire_name(rdata[3])
    if rtype == T.TXT:
        return b"".join(bytes((len(chunk),)) + chunk for chunk in rdata)
    if rtype == T.SOA:
        mname, rname, *timers = rdata
        return wire_name(mname) + wire_name(rname) + SOA_FIXED.pack(serial, *timers)
    raise ValueError(f"cannot sign record type {rtype}")


def rrset_wire(rrset: list[RR], owner: bytes, serial: int) -> bytes:
    """The RRs of one RRset as they enter the signature: ``owner`` is the (wildcard-
    reduced) owner name in wire form; the TTL is the RRset's, which is one."""
    first = rrset[0]
    datas = sorted({rdata_wire(rr.rtype, rr.rdata, serial) for rr in rrset})
    return b"".join(owner + RR_HEAD.pack(first.rtype, T.CLASS_IN, first.ttl, len(d)) + d
                    for d in datas)
