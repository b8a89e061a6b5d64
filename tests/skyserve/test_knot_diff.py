"""skyserve side by side with knot: one zone written twice, as SkyDNS keys in etcd and as a
zone file served by Debian's knotd, and every (name, type) pair over it asked of both.

For every name whose SkyDNS meaning equals its zone-file meaning the replies must be the
same: rcode, AA, the answer RRsets with their TTLs, the authority SOA with its TTL (the
serial aside: ours is the etcd revision), and the question as the client spelled it. The
pairs where the two forms cannot mean the same are listed in ``DIFFERENT`` with why.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import dns.flags
import dns.message
import dns.query
import dns.rdatatype
import pytest

from tests.support.dnsutil import key
from tests.support.etcd_server import EtcdServer
from tests.support.knot_server import KnotServer, find_knotd
from tests.support.skyserve_proc import SkyserveProcess

pytestmark = pytest.mark.e2e

ZONE = "diff.test"
LONG = "x" * 300

# name (relative to the zone) -> SkyDNS value; "a/b" stores the value at b.a.<zone>.
SKYDNS: dict[str, dict[str, object]] = {
    "ns1.ns.dns": {"host": "192.0.2.53"},
    "www": {"host": "192.0.2.1"},
    "www6": {"host": "2001:db8::1"},
    "x1.multi": {"host": "192.0.2.2", "ttl": 60},
    "x2.multi": {"host": "192.0.2.3", "ttl": 60},
    "v4.dual": {"host": "192.0.2.4"},
    "v6.dual": {"host": "2001:db8::4"},
    "txt": {"text": "hello world"},
    "long": {"text": LONG},
    "both": {"host": "192.0.2.5", "text": "v=spf1 -all"},
    "c1": {"host": "c2.diff.test"},
    "c2": {"host": "www.diff.test", "ttl": 120},
    "c3": {"host": "missing.diff.test"},
    "c4": {"host": "www6.diff.test"},
    "c5": {"host": "foo.wild.diff.test"},
    "c6": {"host": "txt.diff.test."},
    "c7": {"host": "x.wc.diff.test"},
    "l1": {"host": "l2.diff.test"},
    "l2": {"host": "l1.diff.test"},
    "ext": {"host": "www.example.net"},
    "*.wild": {"host": "192.0.2.9"},
    "*.wc": {"host": "www.diff.test"},
    "a._http._tcp.svc": {"host": "192.0.2.20", "port": 80},
    "b._http._tcp.svc": {"host": "192.0.2.21", "port": 80},
    "m1.mail": {"host": "192.0.2.25", "mail": True, "priority": 5},
}

ZONE_FILE = f"""$ORIGIN {ZONE}.
$TTL 300
@ 30 SOA ns.dns hostmaster 1 7200 1800 86400 30
@ NS ns1.ns.dns
ns1.ns.dns A 192.0.2.53
ns.dns A 192.0.2.53
dns A 192.0.2.53
www A 192.0.2.1
www6 AAAA 2001:db8::1
multi 60 A 192.0.2.2
multi 60 A 192.0.2.3
x1.multi 60 A 192.0.2.2
x2.multi 60 A 192.0.2.3
dual A 192.0.2.4
dual AAAA 2001:db8::4
v4.dual A 192.0.2.4
v6.dual AAAA 2001:db8::4
txt TXT "hello world"
long TXT "{LONG[:255]}" "{LONG[255:]}"
both A 192.0.2.5
both TXT "v=spf1 -all"
c1 CNAME c2
c2 120 CNAME www
c3 CNAME missing
c4 CNAME www6
c5 CNAME foo.wild
c6 CNAME txt
c7 CNAME x.wc
l1 CNAME l2
l2 CNAME l1
ext CNAME www.example.net.
*.wild A 192.0.2.9
*.wc CNAME www
a._http._tcp.svc A 192.0.2.20
a._http._tcp.svc SRV 10 100 80 a._http._tcp.svc
b._http._tcp.svc A 192.0.2.21
b._http._tcp.svc SRV 10 100 80 b._http._tcp.svc
_http._tcp.svc SRV 10 50 80 a._http._tcp.svc
_http._tcp.svc SRV 10 50 80 b._http._tcp.svc
_http._tcp.svc A 192.0.2.20
_http._tcp.svc A 192.0.2.21
_tcp.svc SRV 10 50 80 a._http._tcp.svc
_tcp.svc SRV 10 50 80 b._http._tcp.svc
_tcp.svc A 192.0.2.20
_tcp.svc A 192.0.2.21
svc SRV 10 50 80 a._http._tcp.svc
svc SRV 10 50 80 b._http._tcp.svc
svc A 192.0.2.20
svc A 192.0.2.21
mail A 192.0.2.25
mail MX 5 m1.mail
m1.mail A 192.0.2.25
m1.mail MX 5 m1.mail
"""

MISSING = ["missing", "nope.www", "a.b.multi", "foo.wild", "a.b.wild", "x.wc", "deep.x.wc",
           "*.wild", "_udp.svc", "nothing.ns.dns"]
NAMES = ["", "dns", "ns.dns", "ns1.ns.dns", "www", "www6", "multi", "x1.multi", "x2.multi",
         "dual", "v4.dual", "v6.dual", "txt", "long", "both", "c1", "c2", "c3", "c4", "c5",
         "c6", "c7", "l1", "l2", "ext", "svc", "_tcp.svc", "_http._tcp.svc",
         "a._http._tcp.svc", "b._http._tcp.svc", "mail", "m1.mail", *MISSING]
TYPES = ["A", "AAAA", "CNAME", "TXT", "MX", "SRV", "PTR", "NS", "SOA", "CAA", "HINFO",
         "NAPTR", "TYPE65280", "ANY"]

HOSTS = {"ns1.ns.dns", "ns.dns", "dns", "www", "www6", "multi", "x1.multi", "x2.multi",
         "dual", "v4.dual", "v6.dual", "both", "foo.wild", "a.b.wild", "*.wild", "mail",
         "m1.mail", "c1", "c2", "c3", "c4", "c5", "c6", "c7", "l1", "l2", "ext", "x.wc",
         "deep.x.wc"}
# Where the two forms cannot mean the same (name, type); "*" is every type.
DIFFERENT: dict[tuple[str, str], str] = {
    **{(n, "SRV"): "SkyDNS makes an SRV (port 0) of every host record; a zone file has none"
       for n in HOSTS},
    ("", "MX"): "SkyDNS gives the apex the mail records below it; a zone file has none there",
    ("", "SRV"): "SkyDNS gives the apex every service below it; a zone file has none there",
    ("", "ANY"): "the apex's ANY: knot gives its SOA and NS, we give apex.dns records only",
    ("dual", "ANY"): "RFC 8482: knot answers ANY over UDP with one RRset, we give A and AAAA",
    ("both", "ANY"): "RFC 8482: knot answers ANY over UDP with one RRset, we give A and TXT",
    ("wild", "*"): "SkyDNS: a name answers its subtree, '*' record included; zone file: ENT",
    ("wc", "*"): "SkyDNS: the '*' record under wc makes wc a CNAME; zone file: ENT",
}
NAMES += ["wild", "wc"]


def differs(name: str, rdtype: str) -> bool:
    return (name, rdtype) in DIFFERENT or (name, "*") in DIFFERENT


def spelled(name: str) -> str:
    """The name in mixed case, so that echoing the client's spelling is compared too."""
    fqdn = f"{name}.{ZONE}." if name else f"{ZONE}."
    return "".join(c.upper() if i % 3 == 1 else c for i, c in enumerate(fqdn))


def comparable(reply: dns.message.Message) -> dict[str, object]:
    """What must be identical: rcode, AA, question as sent, answer RRsets (members
    sorted: RRset order is free), authority SOA with its TTL, serial zeroed."""
    def rrsets(section: list[dns.rrset.RRset]) -> list[tuple[str, int, str, list[str]]]:
        out = []
        for rrset in section:
            items = sorted(rd.to_text() for rd in rrset)
            if rrset.rdtype == dns.rdatatype.SOA:
                items = [" ".join(p if i != 2 else "0" for i, p in enumerate(t.split()))
                         for t in items]
            out.append((rrset.name.to_text(), rrset.ttl, dns.rdatatype.to_text(rrset.rdtype),
                        items))
        return out

    return {"rcode": reply.rcode(), "aa": bool(reply.flags & dns.flags.AA),
            "question": [q.to_text() for q in reply.question],
            "answer": rrsets(reply.answer), "authority": rrsets(reply.authority)}


@pytest.fixture
def servers(etcd: EtcdServer, clean_prefix: str, skyserve: Callable[..., SkyserveProcess],
            tmp_path: object) -> Iterator[tuple[int, int]]:
    binary = find_knotd()
    if binary is None:
        pytest.skip("knotd not installed (apt-get install knot)")
    for name, value in SKYDNS.items():
        etcd.put(key(clean_prefix, f"{name}.{ZONE}"), json.dumps(value))
    proc = skyserve([f"{ZONE}."])
    with KnotServer(binary, {f"{ZONE}.": ZONE_FILE}) as knot:
        yield proc.dns_port, knot.port


def ask(port: int, name: str, rdtype: str) -> dict[str, object]:
    q = dns.message.make_query(name, rdtype, use_edns=0)
    return comparable(dns.query.udp(q, "127.0.0.1", port=port, timeout=2))


def test_every_pair_is_answered_as_knot_answers_it(servers: tuple[int, int]) -> None:
    ours, knot = servers
    mismatches = []
    compared = 0
    for name in NAMES:
        for rdtype in TYPES:
            if differs(name, rdtype):
                continue
            qname = spelled(name)
            got, want = ask(ours, qname, rdtype), ask(knot, qname, rdtype)
            compared += 1
            if got != want:
                mismatches.append(f"{qname} {rdtype}:\n  skyserve {got}\n  knot     {want}")
    assert compared > 500
    assert not mismatches, f"{len(mismatches)} of {compared} differ:\n" + "\n".join(mismatches)
