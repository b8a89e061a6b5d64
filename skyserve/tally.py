"""Counting queries on the hot path with plain integers; ``metrics`` exports them.

One ``Stat`` describes a reply well enough for every ``coredns_dns_*`` series. Cached replies
carry their precomputed Stat, so a cache hit costs one Counter increment. Their duration is
counted in the first histogram bucket (0.25 ms) without timing it: an in-memory hit takes a
few microseconds, far below that bound.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import NamedTuple

# CoreDNS's plugin.TimeBuckets: 0.25 ms doubling 16 times; and its size buckets.
DURATION_BUCKETS = tuple(0.00025 * 2**i for i in range(16))
SIZE_BUCKETS = (0, 100, 200, 300, 400, 511, 1023, 2047, 4095, 8291, 16e3, 32e3, 48e3, 64e3)

QTYPES = {1: "A", 28: "AAAA", 5: "CNAME", 48: "DNSKEY", 43: "DS", 15: "MX", 47: "NSEC",
          50: "NSEC3", 2: "NS", 12: "PTR", 46: "RRSIG", 6: "SOA", 33: "SRV", 16: "TXT",
          251: "IXFR", 252: "AXFR", 255: "ANY"}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED",
          16: "BADVERS"}


class Stat(NamedTuple):
    proto: str  # "udp" / "tcp"
    zone: str  # the matched zone with a trailing dot, or "dropped"
    qtype: str  # mnemonic, or "other"
    rcode: str
    do: bool
    plugin: str  # which step answered: "etcd", "forward", "cache", ""
    request_bucket: int
    response_bucket: int
    duration_bucket: int


def size_bucket(size: int) -> int:
    return bisect_left(SIZE_BUCKETS, size)


def duration_bucket(seconds: float) -> int:
    return bisect_left(DURATION_BUCKETS, seconds)


def qtype_name(qtype: int) -> str:
    return QTYPES.get(qtype, "other")


def rcode_name(rcode: int) -> str:
    return RCODES.get(rcode, str(rcode))
