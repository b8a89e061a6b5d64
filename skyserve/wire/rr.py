"""Resource records as the lookup produces them, before they are put on the wire.

``rdata`` is a small tuple per type, so records hash and compare by value (RRsets are
sets: duplicates are dropped by comparing whole records):

=====  ==========================================================
A      (4 packed bytes,)
AAAA   (16 packed bytes,)
CNAME  (target labels,)      likewise NS and PTR
MX     (preference, exchange labels)
SRV    (priority, weight, port, target labels)
TXT    (character-string bytes, ...)
SOA    (mname, rname, refresh, retry, expire, minimum); the serial (the etcd revision)
       is added on the wire, unless given after rname (an upstream's SOA, zone transfers)
DNSKEY (RDATA bytes,)        likewise DS, RRSIG and NSEC (``constants.OPAQUE``)
=====  ==========================================================
"""

from __future__ import annotations

from typing import Any, NamedTuple

from skydns.record import Labels


class RR(NamedTuple):
    owner: Labels
    rtype: int
    ttl: int
    rdata: tuple[Any, ...]


def txt_strings(text: str) -> tuple[bytes, ...]:
    """Split TXT data into <=255-byte character-strings.

    Unlike SkyDNS and CoreDNS, a length that is an exact multiple of 255 does not get a
    trailing empty string: that string is not part of the data.
    """
    data = text.encode()
    if not data:
        return (b"",)
    return tuple(data[i : i + 255] for i in range(0, len(data), 255))


def rrsets(records: list[RR]) -> list[list[RR]]:
    """Group records into RRsets (same owner and type), keeping first-seen order.

    Duplicates are dropped and every RRset gets the smallest TTL of its members, as
    RFC 2181 section 5.2 requires of one RRset.
    """
    sets: dict[tuple[Labels, int], dict[tuple[Any, ...], RR]] = {}
    for rr in records:
        sets.setdefault((rr.owner, rr.rtype), {}).setdefault(rr.rdata, rr)
    out: list[list[RR]] = []
    for members in sets.values():
        group = list(members.values())
        ttl = min(rr.ttl for rr in group)
        out.append([rr._replace(ttl=ttl) if rr.ttl != ttl else rr for rr in group])
    return out
