"""The query log: classes, the CoreDNS text format and JSON lines.

First ``QueryLog`` on its own (bytes in, lines out), then the real server's stdout.
"""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Callable

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rrset
import pytest

from skyserve.querylog import QueryLog
from tests.support.dns_upstream import DnsUpstream
from tests.support.dnsutil import key
from tests.support.etcd_server import EtcdServer
from tests.support.polling import wait_for
from tests.support.skyserve_proc import SkyserveProcess

Start = Callable[..., SkyserveProcess]
Upstreams = Callable[..., DnsUpstream]
PEER = ("127.0.0.1", 5353)
TEXT = re.compile(
    r'^(?P<ip>[0-9.]+):(?P<port>\d+) - (?P<id>\d+) "(?P<request>(?:[^"\\\n]|\\.)*)" '
    r"(?P<rcode>[A-Z]+) (?P<flags>[a-z,]+) (?P<rsize>\d+) (?P<duration>\d+\.\d+)s$")
REQUEST = re.compile(r"^(?P<type>\S+) (?P<class>\S+) (?P<name>(?:[^\s\\]|\\.)+) "
                     r"(?P<proto>udp|tcp) (?P<size>\d+) (?P<do>true|false) (?P<bufsize>\d+)$")


def exchange(name: str | dns.name.Name = "example.org", rdtype: str = "A", *,
             rcode: int = dns.rcode.NOERROR, answer: bool = True, qid: int = 3,
             **kw: object) -> tuple[bytes, bytes]:
    """A query and a reply to it, as wire bytes."""
    query = dns.message.make_query(name, rdtype, **kw)  # type: ignore[arg-type]
    query.id = qid
    reply = dns.message.make_response(query)
    reply.flags |= dns.flags.AA
    reply.set_rcode(rcode)
    if answer and rcode == dns.rcode.NOERROR:
        reply.answer.append(dns.rrset.from_text(query.question[0].name, 60, "IN", "A",
                                                "192.0.2.1"))
    return query.to_wire(), reply.to_wire()


def lines(classes: set[str], query: bytes, reply: bytes, fmt: str = "text",
          peer: object = PEER, tcp: bool = False, duration: float = 0.000123) -> list[str]:
    out = io.StringIO()
    QueryLog(classes, fmt, out).log(query, reply, peer, tcp, duration)
    return out.getvalue().splitlines(keepends=True)


# -- classes -------------------------------------------------------------------------

KINDS = {
    "success": exchange(),
    "nxdomain": exchange(rcode=dns.rcode.NXDOMAIN),
    "nodata": exchange(answer=False),
    "servfail": exchange(rcode=dns.rcode.SERVFAIL),
    "refused": exchange(rcode=dns.rcode.REFUSED),
    "formerr": exchange(rcode=dns.rcode.FORMERR),
}
CLASS_OF = {"success": "success", "nxdomain": "denial", "nodata": "denial",
            "servfail": "error", "refused": "error", "formerr": "error"}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("classes", [{"all"}, {"success"}, {"denial"}, {"error"},
                                     {"denial", "error"}], ids=lambda c: "+".join(sorted(c)))
def test_classes(kind: str, classes: set[str]) -> None:
    logged = lines(classes, *KINDS[kind])
    expected = "all" in classes or CLASS_OF[kind] in classes
    assert len(logged) == (1 if expected else 0)


# -- the text format -----------------------------------------------------------------


def test_text_line_is_coredns_common_format() -> None:
    query, reply = exchange(use_edns=False)
    assert lines({"all"}, query, reply) == [
        f'127.0.0.1:5353 - 3 "A IN example.org. udp 29 false 512" NOERROR qr,aa,rd '
        f"{len(reply)} 0.000123s\n"]


def test_text_line_with_edns_do_and_tcp() -> None:
    class Conn:
        def get_extra_info(self, what: str) -> tuple[str, int]:
            assert what == "peername"
            return ("127.0.0.9", 40000)

    query, reply = exchange("Example.ORG", "A", rcode=dns.rcode.NXDOMAIN, use_edns=0,
                            payload=1232, want_dnssec=True, qid=77)
    [line] = lines({"denial"}, query, reply, peer=Conn(), tcp=True, duration=0.5)
    m = TEXT.match(line.rstrip("\n"))
    assert m is not None, line
    req = REQUEST.match(m["request"])
    assert req is not None
    assert (m["ip"], m["port"], m["id"], m["rcode"]) == ("127.0.0.9", "40000", "77", "NXDOMAIN")
    assert req.groupdict() == {"type": "A", "class": "IN", "name": "Example.ORG.",
                               "proto": "tcp", "size": str(len(query)), "do": "true",
                               "bufsize": "1232"}
    assert m["rsize"] == str(len(reply)) and m["duration"] == "0.500000"


def test_no_peer_and_short_reply() -> None:
    query, reply = exchange()
    [line] = lines({"all"}, query, reply, peer=None)
    assert line.startswith("-:0 - 3 ")
    assert lines({"all"}, query, reply[:11]) == []


@pytest.mark.parametrize("label", [b"100%", b"%s%d%n%(x)s", b"a{0}b"])
def test_percent_and_braces_in_names(label: bytes) -> None:
    name = dns.name.Name((label, b"example", b"org", b""))
    query, reply = exchange(name)
    text = name.to_text()[: -len(".example.org.")]  # presentation form: ( and ) escaped
    [line] = lines({"all"}, query, reply)
    assert f'"A IN {text}.example.org. udp' in line
    [js] = lines({"all"}, query, reply, fmt="json")
    assert json.loads(js)["name"] == f"{text}.example.org."


@pytest.mark.parametrize("label", [b"evil\nFAKE LINE", b'quo"te', b"sp ace", b"tab\there",
                                   b"back\\slash", b"nul\x00byte"],
                         ids=["newline", "quote", "space", "tab", "backslash", "nul"])
def test_special_bytes_in_names_keep_one_parseable_line(label: bytes) -> None:
    """RFC 1035 presentation escapes (``\\"``, ``\\032``...): one event, one line."""
    name = dns.name.Name((label, b"example", b"org", b""))
    query, reply = exchange(name)
    out = lines({"all"}, query, reply)
    assert len(out) == 1, f"one query became {len(out)} lines: {out!r}"
    line = out[0]
    assert not any(ord(c) < 0x20 for c in line.rstrip("\n")), f"control bytes in {line!r}"
    m = TEXT.match(line.rstrip("\n"))
    assert m is not None, f"unparseable line {line!r}"
    req = REQUEST.match(m["request"])
    assert req is not None, f"request part {m['request']!r} does not split into 7 fields"
    assert dns.name.from_text(req["name"]) == name
    [js] = lines({"all"}, query, reply, fmt="json")
    assert json.loads(js)["client_ip"] == "127.0.0.1"


# -- JSON ----------------------------------------------------------------------------


def test_json_line_fields() -> None:
    query, reply = exchange(rcode=dns.rcode.SERVFAIL, use_edns=0, want_dnssec=True)
    [line] = lines({"error"}, query, reply, fmt="json", duration=0.0123456789)
    assert line.endswith("\n") and line.count("\n") == 1
    record = json.loads(line)
    assert {k: record[k] for k in ("client_ip", "name", "type", "rcode")} == {
        "client_ip": "127.0.0.1", "name": "example.org.", "type": "A", "rcode": "SERVFAIL"}
    assert record["duration_seconds"] == pytest.approx(0.0123456789, abs=1e-6)
    assert record["do"] is True and record["proto"] == "udp" and record["id"] == 3


# -- the real server -----------------------------------------------------------------


def logged(proc: SkyserveProcess, needle: str) -> list[str]:
    return [line for line in proc.log_text().splitlines() if needle in line]


@pytest.fixture
def record(etcd: EtcdServer, clean_prefix: str) -> str:
    etcd.put(key(clean_prefix, "a.skydns.test"), '{"host":"10.0.0.1"}')
    return "a.skydns.test"


@pytest.mark.e2e
def test_query_log_is_off_by_default(record: str, skyserve: Start) -> None:
    proc = skyserve(("skydns.test.",))
    proc.query(record)
    proc.query("nothing.skydns.test")
    proc.query("example.com")
    time.sleep(0.2)
    assert logged(proc, "skydns.test. udp") == [] and logged(proc, "example.com") == []


@pytest.mark.e2e
def test_text_lines_on_stdout(record: str, skyserve: Start, dns_upstream: Upstreams) -> None:
    up = dns_upstream()
    up.add("www.example.com", "A", "192.0.2.1")
    proc = skyserve(("skydns.test.",), ["--log-queries", "all", "--upstream", up.address])
    for tcp in (False, False, True):  # the second answer comes from the answer cache
        proc.query(record, tcp=tcp)
    proc.query("www.example.com")
    assert wait_for(lambda: len(logged(proc, '"A IN ')) == 4, 3.0)
    ours = logged(proc, "a.skydns.test.")
    assert len(ours) == 3
    for line, proto in zip(ours, ("udp", "udp", "tcp"), strict=True):
        m = TEXT.match(line)
        assert m is not None, line
        req = REQUEST.match(m["request"])
        assert req is not None and req["name"] == "a.skydns.test." and req["proto"] == proto
        assert m["rcode"] == "NOERROR" and m["flags"] == "qr,aa,rd,ra" and m["ip"] == "127.0.0.1"
    [forwarded] = logged(proc, "www.example.com.")
    m = TEXT.match(forwarded)
    assert m is not None and m["flags"] == "qr,rd,ra", forwarded


@pytest.mark.e2e
def test_json_lines_on_stdout(record: str, skyserve: Start) -> None:
    proc = skyserve(("skydns.test.",), ["--log-queries", "all", "--log-format", "json"])
    proc.query(record)
    proc.query("nothing.skydns.test", "TXT")
    assert wait_for(lambda: len(logged(proc, '"name":')) == 2, 3.0)
    records = [json.loads(line) for line in logged(proc, '"name":')]
    assert [(r["client_ip"], r["name"], r["type"], r["rcode"]) for r in records] == [
        ("127.0.0.1", "a.skydns.test.", "A", "NOERROR"),
        ("127.0.0.1", "nothing.skydns.test.", "TXT", "NXDOMAIN")]
    assert all(isinstance(r["duration_seconds"], float | int) and 0 <= r["duration_seconds"] < 1
               for r in records)


@pytest.mark.e2e
def test_denial_class_only(record: str, skyserve: Start) -> None:
    proc = skyserve(("skydns.test.",), ["--log-queries", "denial"])
    proc.query(record)  # success
    proc.query("nothing.skydns.test")  # NXDOMAIN
    proc.query(record, "MX")  # NODATA
    proc.query("example.com")  # REFUSED (no upstream): an error
    assert wait_for(lambda: len(logged(proc, " IN ")) >= 2, 3.0)
    time.sleep(0.2)
    lines_ = logged(proc, " IN ")
    assert len(lines_) == 2, lines_
    assert "nothing.skydns.test. udp" in lines_[0] and "NXDOMAIN" in lines_[0]
    assert '"MX IN a.skydns.test. udp' in lines_[1] and "NOERROR" in lines_[1]


@pytest.mark.e2e
def test_percent_in_a_name(record: str, skyserve: Start) -> None:
    proc = skyserve(("skydns.test.",), ["--log-queries", "all"])
    for name in ("100%.skydns.test", "%s%d%n.skydns.test"):
        assert proc.query(name).rcode() == dns.rcode.NXDOMAIN
    assert proc.query(record).rcode() == dns.rcode.NOERROR
    assert wait_for(lambda: len(logged(proc, '"A IN ')) == 3, 3.0)
    assert logged(proc, '"A IN 100%.skydns.test. udp')
    assert logged(proc, '"A IN %s%d%n.skydns.test. udp')
    assert "Traceback" not in proc.log_text()


@pytest.mark.e2e
def test_errors_are_logged_even_without_a_query_log(skyserve: Start,
                                                   dns_upstream: Upstreams) -> None:
    """``errors always logged``: a SERVFAIL because every upstream failed leaves a line."""
    dead = dns_upstream(mode="drop")
    proc = skyserve(("skydns.test.",), ["--forward-timeout", "0.3", "--max-fails", "100",
                                        "--upstream", dead.address])
    assert proc.query("broken.example.com", timeout=3).rcode() == dns.rcode.SERVFAIL
    assert wait_for(lambda: bool(logged(proc, "broken.example.com")), 1), proc.log_tail(5)
