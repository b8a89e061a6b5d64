"""RFC 8906 section 8 (the DNS and EDNS compliance tests), asked of knot and of skyserve
serving the same zone: every test knot passes, skyserve must pass too."""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Callable

import dns.edns
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from tests.support.dnsutil import key
from tests.support.etcd_server import EtcdServer
from tests.support.knot_server import KnotServer, find_knotd
from tests.support.skyserve_proc import SkyserveProcess

pytestmark = pytest.mark.e2e

ZONE = "rfc.test."
ZONE_FILE = """$ORIGIN rfc.test.
$TTL 300
@ 30 SOA ns.dns hostmaster 1 7200 1800 86400 30
@ NS ns1.ns.dns
ns1.ns.dns A 192.0.2.53
"""
HOST = "127.0.0.1"
Check = Callable[[int], list[str]]


def ask(port: int, rdtype: str = "SOA", *, tcp: bool = False, flags: int = dns.flags.AA,
        **kw: object) -> dns.message.Message:
    q = dns.message.make_query(ZONE, rdtype, **kw)  # type: ignore[arg-type]
    q.flags = flags & ~dns.flags.AA
    return (dns.query.tcp if tcp else dns.query.udp)(q, HOST, port=port, timeout=2)


def soa_answer(r: dns.message.Message, *, edns: int = -1) -> list[str]:
    out = []
    if r.rcode() != dns.rcode.NOERROR:
        out.append(f"rcode {dns.rcode.to_text(r.rcode())}")
    if [x.rdtype for x in r.answer] != [dns.rdatatype.SOA]:
        out.append("no SOA answer")
    if not r.flags & dns.flags.AA:
        out.append("no AA")
    if r.edns != edns:
        out.append(f"EDNS version {r.edns}, want {edns}")
    return out


def badvers(r: dns.message.Message) -> list[str]:
    out = []
    if r.rcode() != dns.rcode.BADVERS:
        out.append(f"rcode {dns.rcode.to_text(r.rcode())}")
    if r.answer:
        out.append("answer in a BADVERS")
    if r.edns != 0:
        out.append(f"EDNS version {r.edns}")
    return out


def no_option(r: dns.message.Message, code: int) -> list[str]:
    return [f"option {code} echoed"] if any(o.otype == code for o in r.options) else []


UNKNOWN = [dns.edns.GenericOption(100, b"")]


def raw(port: int, data: bytes) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        s.sendto(data, (HOST, port))
        return s.recv(65535)


def opcode15_header_only(port: int) -> list[str]:
    reply = raw(port, struct.pack("!HHHHHH", 99, 15 << 11, 0, 0, 0, 0))
    qid, flags, *counts = struct.unpack_from("!HHHHHH", reply)
    out = []
    if flags & 0xF != dns.rcode.NOTIMP:
        out.append(f"rcode {flags & 0xF}")
    if (flags >> 11) & 0xF != 15 or qid != 99:
        out.append("opcode or id not echoed")
    if any(counts):
        out.append(f"counts {counts}")
    return out


CHECKS: dict[str, Check] = {
    "8.1.1 basic": lambda p: soa_answer(ask(p, use_edns=False)),
    "8.1.2 unknown type": lambda p: (lambda r: [] if r.rcode() == 0 and not r.answer
                                     and r.authority else ["not NODATA+SOA"])(
        ask(p, "TYPE1000", use_edns=False)),
    "8.1.3.1 CD=1": lambda p: (lambda r: soa_answer(r) + ([] if r.flags & dns.flags.CD
                                                           else ["CD not echoed"]))(
        ask(p, use_edns=False, flags=dns.flags.CD)),
    "8.1.3.3 Z=1": lambda p: (lambda r: soa_answer(r) + (["Z echoed"] if r.flags & 0x40
                                                          else []))(
        ask(p, use_edns=False, flags=0x40)),
    "8.1.4 opcode 15, header only": opcode15_header_only,
    "8.1.5 TCP": lambda p: soa_answer(ask(p, use_edns=False, tcp=True)),
    "8.2.1 EDNS 0": lambda p: (lambda r: soa_answer(r, edns=0) + (
        ["options in reply"] if r.options else []))(ask(p, use_edns=0)),
    "8.2.2 unknown option": lambda p: (lambda r: soa_answer(r, edns=0) + no_option(r, 100))(
        ask(p, use_edns=0, options=UNKNOWN)),
    "8.2.3 unknown flag": lambda p: (lambda r: soa_answer(r, edns=0) + (
        ["MBZ flag echoed"] if r.ednsflags & 0x40 else []))(ask(p, use_edns=0, ednsflags=0x40)),
    "8.2.4 EDNS 1": lambda p: badvers(ask(p, use_edns=1)),
    "8.2.5 EDNS 1 + option": lambda p: (lambda r: badvers(r) + no_option(r, 100))(
        ask(p, use_edns=1, options=UNKNOWN)),
    "8.2.6 EDNS 1 + flag": lambda p: (lambda r: badvers(r) + (
        ["MBZ flag echoed"] if r.ednsflags & 0x40 else []))(ask(p, use_edns=1, ednsflags=0x40)),
    "8.2.7 EDNS 1 + flag + option": lambda p: (lambda r: badvers(r) + no_option(r, 100))(
        ask(p, use_edns=1, ednsflags=0x40, options=UNKNOWN)),
    "8.2.9 DO=1": lambda p: soa_answer(ask(p, use_edns=0, want_dnssec=True), edns=0),
    "8.2.11 TCP + EDNS": lambda p: soa_answer(ask(p, use_edns=0, tcp=True), edns=0),
}


def test_every_section_8_test_knot_passes_skyserve_passes(
    etcd: EtcdServer, clean_prefix: str, skyserve: Callable[..., SkyserveProcess]
) -> None:
    binary = find_knotd()
    if binary is None:
        pytest.skip("knotd not installed (apt-get install knot)")
    etcd.put(key(clean_prefix, f"ns1.ns.dns.{ZONE}"), json.dumps({"host": "192.0.2.53"}))
    ours = skyserve([ZONE]).dns_port
    with KnotServer(binary, {ZONE: ZONE_FILE}) as knot:
        results = {name: (check(knot.port), check(ours)) for name, check in CHECKS.items()}
    knot_passes = [name for name, (k, _) in results.items() if not k]
    assert len(knot_passes) >= 12, results
    failing = {name: s for name, (k, s) in results.items() if not k and s}
    assert not failing
