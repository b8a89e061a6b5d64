"""Zone transfers from skyserve to real secondaries (knot, NSD, BIND) and to dnspython.

One skyserve is the hidden primary of ``skydns.test.`` (transfers from 127.0.0.0/8, TSIG
key required, NOTIFY to the secondary); the secondary must converge after etcd puts and
deletes, use IXFR for small changes (by their own account: logs or IXFR store), fall
back to AXFR when its serial is unknown (a restarted skyserve, an etcd compaction), and
then answer every name and type as skyserve does, except where docs/transfers.md says a
zone cannot express skyserve's answer.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterator

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsigkeyring
import dns.xfr
import pytest

from tests.support.etcd_server import EtcdServer
from tests.support.netutil import free_port
from tests.support.secondaries import KINDS, Key, Secondary, ensure_installed
from tests.support.skyserve_proc import SkyserveProcess

StartSkyserve = Callable[..., SkyserveProcess]

pytestmark = pytest.mark.e2e

ZONE = "skydns.test."
KEY = Key("xfr-key", base64.b64encode(b"0123456789abcdef0123456789abcdef").decode())
KEYRING = dns.tsigkeyring.from_text({KEY.name: ("hmac-sha256", KEY.secret)})
RECORDS_BIG = 100_000
TYPES = ("A", "AAAA", "TXT", "CNAME", "SRV", "MX", "PTR", "NS", "SOA")
RECORDS = {
    "dns/ns/ns1": {"host": "127.0.0.1"},
    "a": {"host": "10.1.0.1"},
    "svc/x1": {"host": "10.1.0.2", "port": 80},
    "svc/x2": {"host": "10.1.0.3", "port": 81, "weight": 30},
    "v6": {"host": "2001:db8::1"},
    "out": {"host": "b.example.org."},
    "t": {"text": "hello"},
    "mx": {"host": "mail.skydns.test.", "mail": True, "priority": 5},
    "mail": {"host": "10.1.0.9"},
    "wild/*": {"host": "10.1.0.20"},
    "conf/x": {"host": "10.1.0.30"},
    "conf/y": {"host": "a.skydns.test."},
}
# Where a standard zone cannot say what skyserve answers (docs/transfers.md, "What a
# transfer cannot express"): an alias keeps its CNAME, so the secondary answers SRV with
# it where skyserve answers SRV from the record; a mail alias keeps its MX and loses its
# CNAME, so the types skyserve answers with the CNAME are NODATA there; the apex's MX and
# SRV (skyserve: the mail and service records below it) are not in the zone. (``conf``,
# a CNAME beside A data, loses the CNAME in the zone, and skyserve never answers a CNAME
# beside addresses either: no difference.)
DIFFERENT = {"out.skydns.test.": {"SRV"}, "y.conf.skydns.test.": {"SRV"},
             "mx.skydns.test.": {"A", "AAAA", "TXT", "CNAME", "PTR", "NS", "SOA"},
             "skydns.test.": {"MX", "SRV"}}


def key(prefix: str, path: str) -> str:
    return f"{prefix}/test/skydns/{path}"


def put_all(etcd: EtcdServer, prefix: str, records: dict[str, dict[str, object]]) -> None:
    for path, value in records.items():
        etcd.put(key(prefix, path), json.dumps(value))


def primary_args(port: int | None = None, key_required: bool = True) -> list[str]:
    args = ["--transfer", f"{ZONE}=127.0.0.0/8", "--tsig-key",
            f"{KEY.name}=hmac-sha256:{KEY.secret}"]
    if key_required:
        args += ["--transfer-key", f"{ZONE}={KEY.name}"]
    if port is not None:
        args += ["--notify", f"{ZONE}=127.0.0.1:{port}"]
    return args


def axfr(port: int, zone: str = ZONE, keyring: object = KEYRING,
         timeout: float = 5.0) -> list[dns.message.Message]:
    """Every message of an AXFR, each checked to carry a verified TSIG when signed."""
    query = dns.message.make_query(zone, "AXFR", use_edns=0)
    if keyring is not None:
        query.use_tsig(keyring, keyname=KEY.name, algorithm="hmac-sha256")
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        dns.query.send_tcp(sock, query)
        messages, soas = [], 0
        tsig_ctx = None
        while soas < 2:
            wire = _read_tcp(sock)
            msg = dns.message.from_wire(wire, keyring=query.keyring, request_mac=query.mac,
                                        xfr=True, origin=None, tsig_ctx=tsig_ctx,
                                        multi=True)
            tsig_ctx = msg.tsig_ctx
            if msg.rcode() != dns.rcode.NOERROR:
                return [msg]
            messages.append(msg)
            soas += sum(1 for rrset in msg.answer if rrset.rdtype == dns.rdatatype.SOA)
    return messages


def _read_tcp(sock: socket.socket) -> bytes:
    def exactly(n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                raise EOFError("connection closed")
            buf += chunk
        return buf
    return exactly(struct.unpack("!H", exactly(2))[0])


def owners(messages: list[dns.message.Message]) -> set[str]:
    return {rrset.name.to_text() for m in messages for rrset in m.answer}


def answer(reply: dns.message.Message | None) -> tuple[str, list[str]] | None:
    if reply is None:
        return None
    rrs = sorted(f"{r.name} {r.ttl} {dns.rdatatype.to_text(r.rdtype)} {rd}"
                 for r in reply.answer for rd in r)
    return dns.rcode.to_text(reply.rcode()), rrs


def transfers(proc: SkyserveProcess) -> dict[tuple[str, str], float]:
    """Transfers served, by (type, result)."""
    out: dict[tuple[str, str], float] = {}
    for (name, labels), value in proc.scrape().items():
        if name == "skyserve_xfr_transfers_total":
            found = dict(labels)
            k = (found["type"], found["result"])
            out[k] = out.get(k, 0) + value
    return out


# -- access, TSIG, UDP, and what a transfer holds -------------------------------------------


def test_access_tsig_and_udp(etcd: EtcdServer, clean_prefix: str, skyserve: StartSkyserve) -> None:
    put_all(etcd, clean_prefix, RECORDS)
    proc = skyserve([ZONE, "other.test."], primary_args())
    # Without the key: refused, with EDE 18 (Prohibited).
    refused = axfr(proc.dns_port, keyring=None)
    assert len(refused) == 1 and refused[0].rcode() == dns.rcode.REFUSED
    assert [o.code for o in refused[0].options if o.otype == 15] == [18]
    # With it: several messages only for big zones, but every one signed and verified.
    messages = axfr(proc.dns_port)
    assert all(m.had_tsig for m in messages)
    records = [(r.name.to_text(), r.rdtype) for m in messages for r in m.answer for _ in r]
    assert records[0] == (ZONE, dns.rdatatype.SOA) and records[-1] == (ZONE, dns.rdatatype.SOA)
    assert "*.wild.skydns.test." in owners(messages)
    # A wrong secret: NOTAUTH (BADSIG), as RFC 8945 says.
    bad = dns.tsigkeyring.from_text({KEY.name: ("hmac-sha256", base64.b64encode(b"x" * 32)
                                                .decode())})
    with pytest.raises(dns.tsig.PeerBadSignature):
        axfr(proc.dns_port, keyring=bad)
    # A zone without --transfer: refused even with the key.
    assert axfr(proc.dns_port, "other.test.")[0].rcode() == dns.rcode.REFUSED
    # AXFR over UDP: refused; IXFR over UDP: the SOA alone.
    q = dns.message.make_query(ZONE, "AXFR")
    q.use_tsig(KEYRING, keyname=KEY.name, algorithm="hmac-sha256")
    assert dns.query.udp(q, "127.0.0.1", port=proc.dns_port, timeout=2).rcode() == \
        dns.rcode.REFUSED
    q = dns.message.make_query(ZONE, "IXFR")
    q.use_tsig(KEYRING, keyname=KEY.name, algorithm="hmac-sha256")
    q.authority.append(messages[0].answer[0])
    reply = dns.query.udp(q, "127.0.0.1", port=proc.dns_port, timeout=2)
    assert [r.rdtype for r in reply.answer] == [dns.rdatatype.SOA] and reply.had_tsig


def test_source_outside_the_prefixes_is_refused(etcd: EtcdServer, clean_prefix: str,
                                                 skyserve: StartSkyserve) -> None:
    put_all(etcd, clean_prefix, RECORDS)
    proc = skyserve([ZONE], ["--transfer", f"{ZONE}=127.0.0.2/32"])
    query = dns.message.make_query(ZONE, "AXFR")
    with socket.create_connection(("127.0.0.1", proc.dns_port), timeout=5) as sock:
        dns.query.send_tcp(sock, query)
        reply = dns.message.from_wire(_read_tcp(sock))
    assert reply.rcode() == dns.rcode.REFUSED
    with socket.create_connection(("127.0.0.1", proc.dns_port), timeout=5,
                                  source_address=("127.0.0.2", 0)) as sock:
        dns.query.send_tcp(sock, query)
        assert dns.message.from_wire(_read_tcp(sock), xfr=True).rcode() == dns.rcode.NOERROR


def test_a_large_zone_in_many_messages(etcd: EtcdServer, clean_prefix: str,
                                       skyserve: StartSkyserve, tmp_path: object) -> None:
    etcd.put(key(clean_prefix, "dns/ns/ns1"), '{"host":"127.0.0.1"}')
    # An idle timeout shorter than building the zone takes: a connection waiting for its
    # transfer is not idle, so it must not be closed meanwhile.
    proc = skyserve([ZONE], [*primary_args(), "--tcp-idle-timeout", "0.5"], ready_timeout=60)
    client = etcd.client()
    records = [(key(clean_prefix, f"big/g{i // 1000}/h{i}"),
                json.dumps({"host": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"}))
               for i in range(RECORDS_BIG)]
    for i in range(0, len(records), 128):
        client.transaction(compare=[], success=[client.transactions.put(k, v)
                                                for k, v in records[i:i + 128]], failure=[])
    last = f"h{RECORDS_BIG - 1}.g{(RECORDS_BIG - 1) // 1000}.big.{ZONE}"
    for _ in range(200):  # the watch has delivered them all: the zone is only marked dirty
        if proc.query(last).answer:
            break
        time.sleep(0.05)
    # The transfer builds the zone (owners marked dirty by the watch) before sending it.
    # kdig, not dnspython: parsing 400,000 records in Python takes longer than the rest.
    path = f"{tmp_path}/big.zone"
    stats = kdig_axfr(proc.dns_port, path)
    assert stats["messages"] > 300
    check = subprocess.run(["named-checkzone", "-i", "local", ZONE, path], capture_output=True,
                           text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr
    with open(path) as zone_file:
        hosts = sum(1 for line in zone_file if line.startswith("h") and "\tA\t" in line)
    assert hosts == RECORDS_BIG


def kdig_axfr(port: int, path: str) -> dict[str, int]:
    """AXFR with kdig, which checks each message's TSIG; the zone written to ``path`` with
    the SOA once; returns kdig's counts (bytes, messages, records)."""
    done = subprocess.run(["kdig", "@127.0.0.1", "-p", str(port), "+tcp", "+time=120",
                           "-y", f"hmac-sha256:{KEY.name}:{KEY.secret}", "+noall", "+answer",
                           "+stats", "AXFR", ZONE], capture_output=True, text=True,
                          timeout=300)
    out = done.stdout
    assert done.returncode == 0 and "Transfer failed" not in out and "WARNING" not in out, \
        out[-2000:] + done.stderr
    records = [line for line in out.splitlines() if line and not line.startswith(";")]
    with open(path, "w") as zone_file:
        zone_file.writelines(line + "\n" for line in records[:-1])  # the SOA again last
    found = re.search(r";; Received (\d+) B \((\d+) messages, (\d+) records\)", out)
    assert found is not None, out[-2000:]
    return {"bytes": int(found[1]), "messages": int(found[2]), "records": int(found[3])}


# -- real secondaries --------------------------------------------------------------------


@pytest.fixture(params=sorted(KINDS))
def kind(request: pytest.FixtureRequest) -> str:
    binary = KINDS[request.param].binary
    if not ensure_installed(binary):
        pytest.skip(f"{binary} is not installed and cannot be")
    return str(request.param)


@pytest.fixture
def secondaries() -> Iterator[list[Secondary]]:
    started: list[Secondary] = []
    yield started
    for s in started:
        s.stop()


def compare(proc_query: object, secondary: Secondary, names: set[str]) -> dict[str, set[str]]:
    """(name -> types) where the secondary's answer differs from skyserve's."""
    different: dict[str, set[str]] = {}
    for name in sorted(names):
        for rdtype in TYPES:
            ours = answer(proc_query(name, rdtype))  # type: ignore[operator]
            theirs = answer(secondary.query(name, rdtype))
            if ours != theirs:
                different.setdefault(name, set()).add(rdtype)
    return different


def test_secondary_follows_skyserve(kind: str, fresh_etcd: EtcdServer, clean_prefix: str,
                                    skyserve: StartSkyserve,
                                    secondaries: list[Secondary]) -> None:
    etcd = fresh_etcd  # restarted and compacted below
    put_all(etcd, clean_prefix, RECORDS)
    dns_port = free_port()
    secondary = KINDS[kind](ZONE, dns_port, KEY)
    secondaries.append(secondary)
    proc = skyserve([ZONE], [*primary_args(secondary.port), "--etcd-probe-interval", "0.3"],
                    dns_port=dns_port, etcd_endpoints=etcd.endpoint)
    secondary.start()
    serial = proc.query(ZONE, "SOA").answer[0][0].serial
    secondary.wait_serial(serial)

    names = owners(axfr(proc.dns_port)) - {"*.wild.skydns.test."}
    names |= {"nothere.skydns.test.", "x.wild.skydns.test.", "a.b.wild.skydns.test."}
    assert compare(proc.query, secondary, names) == DIFFERENT

    # A small change: NOTIFY, then IXFR; the secondary serves it within a second of it.
    etcd.put(key(clean_prefix, "svc/x3"), '{"host":"10.1.0.4"}')
    etcd.delete(key(clean_prefix, "a"))
    old, serial = serial, etcd.revision()
    assert secondary.wait_serial(serial) < 2.0
    assert compare(proc.query, secondary, names | {"x3.svc.skydns.test."}) == DIFFERENT
    assert transfers(proc).get(("IXFR", "ixfr"), 0) >= 1
    assert secondary.refreshed_by(old) == "IXFR", secondary.log_tail(30)

    # A change while the primary is down: restarted, its journal starts after the
    # secondary's serial, so the secondary's IXFR gets the whole zone.
    proc.stop()
    etcd.put(key(clean_prefix, "late"), '{"host":"10.1.0.5"}')
    proc.start()
    proc.wait_ready()
    old, serial = serial, etcd.revision()
    secondary.wait_serial(serial)
    assert answer(secondary.query("late.skydns.test.", "A")) == \
        answer(proc.query("late.skydns.test.", "A"))
    assert transfers(proc).get(("IXFR", "axfr"), 0) >= 1
    assert "ixfr" not in {r for (_, r) in transfers(proc)}
    assert secondary.refreshed_by(old) == "AXFR", secondary.log_tail(30)

    # An etcd compaction past the secondary's serial, skyserve running: frozen, it misses
    # changes that etcd (restarted, which breaks skyserve's watch) then compacts away; its
    # watch cannot resume from a compacted revision, so it reloads the whole prefix, its
    # journal starts afresh, and the secondary's IXFR gets the whole zone again.
    assert proc.pid is not None
    full = transfers(proc).get(("IXFR", "axfr"), 0)
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        etcd.restart()
        etcd.put(key(clean_prefix, "compacted"), '{"host":"10.1.0.6"}')
        etcd.delete(key(clean_prefix, "svc/x3"))
        etcd.compact(etcd.revision())
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    old, serial = serial, etcd.revision()
    secondary.wait_serial(serial)
    assert "reloading the whole prefix" in proc.log_text()
    assert transfers(proc).get(("IXFR", "axfr"), 0) > full
    assert "ixfr" not in {r for (_, r) in transfers(proc)}
    assert secondary.refreshed_by(old) == "AXFR", secondary.log_tail(30)
    now = names | {"compacted.skydns.test.", "x3.svc.skydns.test."}
    assert compare(proc.query, secondary, now) == DIFFERENT
