"""DNS constants: record types, classes, header flags, response codes and their names.

The one place these numbers are spelled; every other module imports them from here.
"""

from __future__ import annotations

import struct

# Record types (RFC 1035 and later)
A = 1
NS = 2
CNAME = 5
SOA = 6
PTR = 12
MX = 15
TXT = 16
AAAA = 28
SRV = 33
OPT = 41
DS = 43
RRSIG = 46
NSEC = 47
DNSKEY = 48
NXNAME = 128  # RFC 9824: a pseudo-type, only ever in an NSEC bitmap
IXFR = 251
AXFR = 252
ANY = 255
# Types whose RDATA the lookup or the signer builds as one bytes value (DNSSEC records,
# whose names are never compressed: RFC 4034 sections 3.1.7, 4.1.1).
OPAQUE = frozenset((DS, RRSIG, NSEC, DNSKEY))

CLASS_IN = 1

# Header flags
QR = 0x8000
OPCODE = 0x7800
AA = 0x0400
TC = 0x0200
RD = 0x0100
RA = 0x0080
AD = 0x0020
CD = 0x0010

# Response codes (BADVERS is extended: RFC 6891)
NOERROR = 0
FORMERR = 1
SERVFAIL = 2
NXDOMAIN = 3
NOTIMP = 4
REFUSED = 5
BADVERS = 16

# Fixed-size parts of a message
HEADER = struct.Struct("!HHHHHH")
RR_FIXED = struct.Struct("!HHIH")
QUESTION = struct.Struct("!HH")
TTL = struct.Struct("!I")
SOA_TIMERS = struct.Struct("!IIII")

OPT_SIZE = 11

# EDNS options (RFC 5001 NSID, RFC 8914 Extended DNS Errors) and the EDE info-codes we send
OPT_NSID = 3
OPT_EDE = 15
EDE_OTHER = 0
EDE_STALE = 3
EDE_NOT_READY = 14
EDE_NOT_AUTHORITATIVE = 20
EDE_NO_REACHABLE_AUTHORITY = 22
EDE_NETWORK_ERROR = 23
MIN_UDP = 512
MAX_TCP = 65535

# Names as CoreDNS's metrics and logs spell them.
QTYPES = {A: "A", AAAA: "AAAA", CNAME: "CNAME", DNSKEY: "DNSKEY", DS: "DS", MX: "MX", NSEC: "NSEC",
          50: "NSEC3", NS: "NS", PTR: "PTR", RRSIG: "RRSIG", SOA: "SOA", SRV: "SRV", TXT: "TXT",
          IXFR: "IXFR", AXFR: "AXFR", ANY: "ANY"}
RCODES = {NOERROR: "NOERROR", FORMERR: "FORMERR", SERVFAIL: "SERVFAIL", NXDOMAIN: "NXDOMAIN",
          NOTIMP: "NOTIMP", REFUSED: "REFUSED", BADVERS: "BADVERS"}


def qtype_name(qtype: int) -> str:
    return QTYPES.get(qtype, "other")


def rcode_name(rcode: int) -> str:
    return RCODES.get(rcode, str(rcode))
