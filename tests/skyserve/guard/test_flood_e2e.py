"""Response rate limiting against a spoofed-source style flood, end to end.

Every 127.x.y.z address is local on Linux, so client sockets bound to addresses in one
/24 stand for a flood forged in the name of one victim prefix, and a socket in another
/24 for a bystander. The server runs with --rrl-rate 10 --rrl-slip 2, as knot's mod-rrl
(rate-limit 10, slip 2) was measured with on this machine.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Callable

import dns.edns
import dns.flags
import dns.message
import dns.query
import pytest

from tests.support.dns_upstream import DnsUpstream
from tests.support.dnsutil import key
from tests.support.etcd_server import EtcdServer
from tests.support.skyserve_proc import SkyserveProcess

pytestmark = pytest.mark.e2e

Start = Callable[..., SkyserveProcess]
RRL = ("--rrl-rate", "10", "--rrl-slip", "2")


def flood(port: int, name: str, sources: list[str], seconds: float, qps: int,
          bystander: str | None = None) -> dict[str, int]:
    """Send ``qps`` queries a second from ``sources`` (and, if given, 10 a second from
    ``bystander``) for ``seconds``; count what comes back."""
    wire = dns.message.make_query(name, "A").to_wire()
    socks = []
    for src in sources:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((src, 0))
        s.setblocking(False)
        socks.append(s)
    by = None
    if bystander is not None:
        by = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        by.bind((bystander, 0))
        by.setblocking(False)
    got = {"sent": 0, "sent_bytes": 0, "full": 0, "truncated": 0, "received_bytes": 0,
           "bystander_sent": 0, "bystander_answered": 0}
    start = time.monotonic()
    end = start + seconds
    while True:
        now = time.monotonic()
        if now >= end + 0.5:
            break
        if now < end:
            while got["sent"] < (now - start) * qps:
                socks[got["sent"] % len(socks)].sendto(wire, ("127.0.0.1", port))
                got["sent"] += 1
                got["sent_bytes"] += len(wire)
            if by is not None and got["bystander_sent"] < (now - start) * 10:
                by.sendto(wire, ("127.0.0.1", port))
                got["bystander_sent"] += 1
        readable, _, _ = select.select([*socks, *([by] if by else [])], [], [], 0.002)
        for s in readable:
            while True:
                try:
                    data = s.recv(65535)
                except BlockingIOError:
                    break
                if s is by:
                    got["bystander_answered"] += 1
                    continue
                got["received_bytes"] += len(data)
                reply = dns.message.from_wire(data)
                got["truncated" if reply.flags & dns.flags.TC else "full"] += 1
    for s in [*socks, *([by] if by else [])]:
        s.close()
    return got


def test_a_flooded_prefix_gets_the_limit_and_a_bystander_everything(
        etcd: EtcdServer, clean_prefix: str, skyserve: Start) -> None:
    etcd.put(key(clean_prefix, "www.skydns.test"), '{"host":"10.0.0.1"}')
    proc = skyserve(["skydns.test."], list(RRL))
    seconds = 4.0
    sources = [f"127.66.0.{i}" for i in range(1, 51)]
    got = flood(proc.dns_port, "www.skydns.test", sources, seconds, qps=400,
                bystander="127.77.0.1")
    # Full answers: the bucket's burst (10) plus 10 a second, and nothing more.
    assert got["full"] <= 10 + 10 * (seconds + 0.5)
    assert got["full"] >= 10 * seconds * 0.8
    limited = got["sent"] - got["full"]
    # Slip 2: about half the limited responses truncated, the rest dropped.
    assert 0.4 * limited <= got["truncated"] <= 0.6 * limited
    # Beyond the limit the victim prefix gets back no more bytes than were sent as it.
    assert got["received_bytes"] <= got["sent_bytes"]
    assert got["bystander_answered"] >= 0.99 * got["bystander_sent"]
    assert proc.metric("skyserve_rrl_limited_responses_total") == limited
    slipped = proc.metric("skyserve_rrl_slipped_responses_total")
    assert slipped == got["truncated"]
    assert proc.metric("skyserve_rrl_dropped_responses_total") == limited - slipped


def test_tcp_and_cookie_clients_in_a_flooded_prefix_are_answered(
        etcd: EtcdServer, clean_prefix: str, skyserve: Start, tmp_path: object) -> None:
    etcd.put(key(clean_prefix, "www.skydns.test"), '{"host":"10.0.0.1"}')
    secret = f"{tmp_path}/secret"
    with open(secret, "w") as f:
        f.write("00112233445566778899aabbccddeeff\n")
    proc = skyserve(["skydns.test."], [*RRL, "--rrl-slip", "0", "--cookie-secret", secret])
    got = flood(proc.dns_port, "www.skydns.test", ["127.66.1.1"], 1.0, qps=100)
    assert got["full"] <= 10 + 15  # the prefix is limited over UDP...
    plain = dns.message.make_query("www.skydns.test", "A")
    for _ in range(30):  # ...but not over TCP, from the same prefix
        assert dns.query.tcp(plain, "127.0.0.1", port=proc.dns_port, timeout=2,
                             source="127.66.1.2").answer
    first = dns.query.tcp(cookie_query(b"clientck"), "127.0.0.1", port=proc.dns_port,
                          timeout=2, source="127.66.1.3")
    [cookie] = [o.to_wire() for o in first.options if o.otype == dns.edns.COOKIE]
    for _ in range(30):  # three times the rate, over UDP: all answered
        reply = dns.query.udp(cookie_query(cookie), "127.0.0.1", port=proc.dns_port,
                              timeout=1, source="127.66.1.3")
        assert reply.answer


def cookie_query(cookie: bytes) -> dns.message.Message:
    return dns.message.make_query("www.skydns.test", "A", use_edns=0,
                                  options=[dns.edns.GenericOption(dns.edns.COOKIE, cookie)])


def test_forwarded_replies_sent_later_are_limited_too(
        skyserve: Start, dns_upstream: Callable[..., DnsUpstream]) -> None:
    up = dns_upstream()
    up.add("www.example.com", "A", "192.0.2.1", ttl=300)
    proc = skyserve(["skydns.test."], [*RRL, "--rrl-slip", "0", "--upstream", up.address,
                                       "--cache-success", "0", "--cache-denial", "0"])
    got = flood(proc.dns_port, "www.example.com", ["127.66.2.1"], 1.0, qps=100)
    assert got["full"] <= 10 + 15 and got["truncated"] == 0
    assert proc.metric("skyserve_rrl_dropped_responses_total") >= 60
