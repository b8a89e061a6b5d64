"""Signed answers validated by a real validating resolver: unbound, trusting the zone
through the DS that ``skyserve dnssec ds`` prints, 0x20 on (use-caps-for-id)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from tests.support.dnssec_keys import ds_of, keygen
from tests.support.dnsutil import key
from tests.support.etcd_server import EtcdServer
from tests.support.polling import wait_for
from tests.support.skyserve_proc import SkyserveProcess
from tests.support.unbound_proc import Unbound

pytestmark = pytest.mark.e2e

ZONE = "skydns.test."
REVERSE = "10.in-addr.arpa."  # PTR is native only in a reverse zone
Start = Callable[..., SkyserveProcess]
RECORDS = {
    "x1.web": '{"host":"10.0.0.1"}',
    "x2.web": '{"host":"10.0.0.2","port":8080}',
    "v6": '{"host":"2001:db8::1"}',
    "txt": '{"text":"hello world"}',
    "alias": '{"host":"web.skydns.test"}',
    "alias2": '{"host":"alias.skydns.test"}',
    # An MX whose host is a name is also a CNAME for A queries (SkyDNS), which unbound's
    # QNAME minimisation asks first: a name host is for CNAMEs, an address host for MX.
    "mail.mx": '{"host":"10.0.0.25","mail":true,"priority":10}',
    "*.wild": '{"host":"10.0.0.7"}',
    "deep.a.b.ent": '{"host":"10.0.0.8"}',
    "ns.dns": '{"host":"10.0.0.53"}',
    "x3.strip.svc": '{"host":"10.0.0.31","port":80,"targetstrip":1}',
    "a.mixed": '{"host":"10.0.0.11","ttl":60}',  # one RRset, two TTLs: signed with one
    "b.mixed": '{"host":"10.0.0.12","ttl":120}',
    "1.0.0.10.in-addr.arpa": '{"host":"x1.web.skydns.test"}',
    "a.2.0.0.10.in-addr.arpa": '{"host":"x2.web.skydns.test"}',
    "b.2.0.0.10.in-addr.arpa": '{"host":"web.skydns.test"}',
}


@pytest.fixture(params=["csk-13", "ksk-zsk-15"])
def keys(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, list[str]]:
    """Each zone's key files: one CSK, or a KSK and a ZSK."""
    if request.param == "csk-13":
        return {z: [keygen(tmp_path, z, "ECDSAP256SHA256", ksk=True)] for z in (ZONE, REVERSE)}
    return {z: [keygen(tmp_path, z, "ED25519", ksk=True), keygen(tmp_path, z, "ED25519")]
            for z in (ZONE, REVERSE)}


@pytest.fixture
def signed(etcd: EtcdServer, clean_prefix: str, skyserve: Start, keys: dict[str, list[str]],
           tmp_path: Path) -> Iterator[tuple[SkyserveProcess, Unbound]]:
    for name, js in RECORDS.items():
        fqdn = name if name.endswith(REVERSE.rstrip(".")) else f"{name}.skydns.test"
        etcd.put(key(clean_prefix, fqdn), js)
    proc = skyserve([ZONE, REVERSE], [a for zone, files in keys.items()
                                      for a in ("--dnssec", f"{zone}={','.join(files)}")])
    resolver = Unbound(tmp_path, {z: ds_of(z, *files) for z, files in keys.items()},
                       proc.dns_port)
    resolver.start()
    yield proc, resolver
    if not resolver.running:
        print(resolver.log_tail())
    resolver.stop()


def secure(resolver: Unbound, name: str, rdtype: str) -> dns.message.Message:
    reply = resolver.query(name, rdtype)
    assert reply.rcode() == dns.rcode.NOERROR, (name, rdtype, reply, resolver.log_tail())
    assert reply.flags & dns.flags.AD, (name, rdtype, reply, resolver.log_tail())
    return reply


def texts(reply: dns.message.Message, rdtype: str) -> set[str]:
    want = dns.rdatatype.from_text(rdtype)
    return {rd.to_text() for rrset in reply.answer if rrset.rdtype == want for rd in rrset}


POSITIVE = [
    ("x1.web.skydns.test.", "A", {"10.0.0.1"}),
    ("web.skydns.test.", "A", {"10.0.0.1", "10.0.0.2"}),
    ("v6.skydns.test.", "AAAA", {"2001:db8::1"}),
    ("txt.skydns.test.", "TXT", {'"hello world"'}),
    ("alias2.skydns.test.", "A", {"10.0.0.1", "10.0.0.2"}),  # a CNAME chain of two
    ("alias.skydns.test.", "CNAME", {"web.skydns.test."}),
    ("anything.wild.skydns.test.", "A", {"10.0.0.7"}),  # a wildcard expansion
    ("two.labels.wild.skydns.test.", "A", {"10.0.0.7"}),
    ("mx.skydns.test.", "MX", {"10 mail.mx.skydns.test."}),
    ("x2.web.skydns.test.", "SRV", {"10 100 8080 x2.web.skydns.test."}),
    ("ent.skydns.test.", "A", {"10.0.0.8"}),  # SkyDNS: records below a name answer for it
    ("skydns.test.", "SOA", None),
    ("skydns.test.", "NS", {"ns.dns.skydns.test."}),
    ("skydns.test.", "DNSKEY", None),
    ("strip.svc.skydns.test.", "SRV", {"10 100 80 strip.svc.skydns.test."}),
    ("mixed.skydns.test.", "A", {"10.0.0.11", "10.0.0.12"}),
    ("10.in-addr.arpa.", "SOA", None),
    ("10.in-addr.arpa.", "DNSKEY", None),
]
PTR = [
    ("1.0.0.10.in-addr.arpa.", "PTR", {"x1.web.skydns.test."}),
    ("2.0.0.10.in-addr.arpa.", "PTR", {"x2.web.skydns.test.", "web.skydns.test."}),
]


def test_every_kind_of_answer_validates(signed: tuple[SkyserveProcess, Unbound]) -> None:
    _, resolver = signed
    for name, rdtype, want in POSITIVE:
        reply = secure(resolver, name, rdtype)
        got = texts(reply, rdtype)
        assert got if want is None else got == want, (name, rdtype, got)


def test_reverse_answers_validate(signed: tuple[SkyserveProcess, Unbound],
                                  tmp_path: Path, keys: dict[str, list[str]]) -> None:
    """PTR answers, through a QNAME-minimising resolver (which asks A at the name first)
    and one that sends the query type it was asked. A name host in a reverse zone is a
    PTR and never a CNAME, so the A query learns no CNAME that would hide the PTR."""
    proc, minimising = signed
    for name, rdtype, want in PTR:
        assert texts(secure(minimising, name, rdtype), rdtype) == want, (name, rdtype)
    direct = Unbound(tmp_path, {z: ds_of(z, *files) for z, files in keys.items()},
                     proc.dns_port, minimise=False)
    direct.start()
    try:
        for name, rdtype, want in PTR:
            assert texts(secure(direct, name, rdtype), rdtype) == want, (name, rdtype)
    finally:
        direct.stop()


@pytest.mark.parametrize(("name", "rdtype"), [
    ("nothing.skydns.test.", "A"),  # no such name
    ("no.such.wild2.skydns.test.", "AAAA"),
    ("x1.web.skydns.test.", "MX"),  # the name exists, the type does not
    ("txt.skydns.test.", "A"),
    ("a.b.ent.skydns.test.", "TXT"),  # an empty non-terminal (records only below it)
    ("skydns.test.", "TXT"),  # the apex
    ("anything.wild.skydns.test.", "TXT"),  # a wildcard's name, another type
    ("9.9.9.10.in-addr.arpa.", "PTR"),  # no such name in the reverse zone
    ("1.0.0.10.in-addr.arpa.", "TXT"),  # a PTR name: no other type, and never a CNAME
    ("1.0.0.10.in-addr.arpa.", "A"),
])
def test_denials_validate(signed: tuple[SkyserveProcess, Unbound], name: str,
                          rdtype: str) -> None:
    _, resolver = signed
    reply = secure(resolver, name, rdtype)  # compact denial: NOERROR (RFC 9824)
    assert not texts(reply, rdtype)


def test_an_etcd_change_is_signed_afresh(signed: tuple[SkyserveProcess, Unbound],
                                         etcd: EtcdServer, clean_prefix: str) -> None:
    _, resolver = signed
    assert texts(secure(resolver, "x1.web.skydns.test.", "A"), "A") == {"10.0.0.1"}
    etcd.put(key(clean_prefix, "x1.web.skydns.test"), '{"host":"10.0.0.99"}')
    etcd.put(key(clean_prefix, "new.skydns.test"), '{"host":"10.0.0.100"}')

    def changed() -> bool:
        one = secure(resolver, "x1.web.skydns.test.", "A")
        two = secure(resolver, "new.skydns.test.", "A")
        return texts(one, "A") == {"10.0.0.99"} and texts(two, "A") == {"10.0.0.100"}

    assert wait_for(changed, 10)


def test_a_zone_signed_with_another_key_is_bogus(
    etcd: EtcdServer, clean_prefix: str, skyserve: Start, tmp_path: Path
) -> None:
    etcd.put(key(clean_prefix, "x1.web.skydns.test"), '{"host":"10.0.0.1"}')
    trusted = keygen(tmp_path, ZONE)
    other = keygen(tmp_path, ZONE)
    proc = skyserve([ZONE], ["--dnssec", f"{ZONE}={other}"])
    resolver = Unbound(tmp_path, {ZONE: ds_of(ZONE, trusted)}, proc.dns_port)
    resolver.start()
    try:
        for name, rdtype in (("x1.web.skydns.test.", "A"), ("nothing.skydns.test.", "A")):
            assert resolver.query(name, rdtype).rcode() == dns.rcode.SERVFAIL
    finally:
        resolver.stop()



def test_delv_fully_validates(signed: tuple[SkyserveProcess, Unbound],
                              keys: dict[str, list[str]], tmp_path: Path) -> None:
    """BIND's own validator, asking skyserve directly from the zone's DS."""
    proc, _ = signed
    owner, _in, _ds, tag, algorithm, digest_type, digest = ds_of(ZONE, *keys[ZONE]).split()
    anchors = tmp_path / "anchors.conf"
    anchors.write_text(f'trust-anchors {{ {owner} static-ds {tag} {algorithm} '
                       f'{digest_type} "{digest}"; }};\n')
    for name, rdtype in (("x1.web.skydns.test", "A"), ("alias2.skydns.test", "A"),
                         ("anything.wild.skydns.test", "A"), ("nothing.skydns.test", "A"),
                         ("x1.web.skydns.test", "MX")):
        out = subprocess.run(["delv", "@127.0.0.1", "-p", str(proc.dns_port), "-a",
                              str(anchors), f"+root={ZONE}", name, rdtype],
                             capture_output=True, text=True, timeout=30)
        assert "fully validated" in out.stdout, (name, rdtype, out.stdout, out.stderr)
