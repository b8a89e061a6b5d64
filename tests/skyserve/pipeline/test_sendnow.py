"""Forwarding at once from the UDP reading thread (``pipeline.sendnow``) against the general
path: the same query, through two UDP servers on one pipeline — one whose reading thread
forwards at once, one that hands every query to the loop — must reach the upstream as the
same question and come back to the client as the same bytes, whatever the upstream does."""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import dns.flags
import dns.message
import pytest

from skydns.record import name_labels
from skyserve import eventloop
from skyserve.forward.cache import Key
from skyserve.forward.forwarder import Forwarder
from skyserve.forward.policy import ForwardSettings
from skyserve.lookup import Zone
from skyserve.pipeline.chain import Pipeline
from skyserve.pipeline.context import Settings
from skyserve.stats import ForwardStats
from skyserve.udp import UdpServer
from tests.support.dns_upstream import SPOOFED, DnsUpstream

# (name, upstream mode of the first upstream, how the client asks)
CASES = [
    ("plain.example.org", "ok", {}),
    ("MiXeD.Example.ORG", "ok", {"use_edns": 0}),
    ("many.example.org", "ok", {"use_edns": 0, "payload": 4096, "want_dnssec": True}),
    ("many.example.org", "ok", {"use_edns": 0, "payload": 700}),
    ("txt.example.org", "ok", {}),  # bigger than 512 bytes: TC to the client
    ("missing.example.org", "ok", {"use_edns": 0}),  # NXDOMAIN
    ("plain.example.org", "servfail", {}),  # fails over to the second upstream
    ("plain.example.org", "refused", {"use_edns": 0, "want_dnssec": True}),
    ("plain.example.org", "truncate", {"use_edns": 0}),  # asked again over TCP
    ("plain.example.org", "wrong_id", {}),  # forged first, then the genuine reply
    ("plain.example.org", "wrong_question", {"use_edns": 0}),
    ("plain.example.org", "from_other_port", {}),
    # Relayed raw when nothing is cached, or left to the full parse (forward.raw):
    ("many.example.org", "ok", {}),  # eight records, no EDNS
    ("plain.example.org", "ok", {"use_edns": 0, "payload": 1232, "flags": 0}),  # RD off
    ("missing.example.org", "ok", {"use_edns": 0, "want_dnssec": True}),  # with the SOA
    ("MiXeD.Example.ORG", "lower_case", {"use_edns": 0}),  # another spelling: accepted
    ("plain.example.org", "ext_rcode", {"use_edns": 0}),
    ("plain.example.org", "after_opt", {"use_edns": 0}),
    ("plain.example.org", "after_opt", {}),
    ("plain.example.org", "trailing", {}),
    ("plain.example.org", "trailing", {"use_edns": 0}),
    ("plain.example.org", "malformed", {"use_edns": 0}),  # dropped, then the genuine one
]


@pytest.fixture
def upstreams() -> Iterator[tuple[DnsUpstream, DnsUpstream]]:
    first, second = DnsUpstream().start(), DnsUpstream().start()
    for up in (first, second):
        up.shuffle = False  # the same bytes for the same question
        up.add("plain.example.org", "A", "192.0.2.1", ttl=60)
        up.add("mixed.example.org", "AAAA", "2001:db8::1", ttl=30)
        up.add("many.example.org", "A", *(f"192.0.2.{i}" for i in range(1, 9)), ttl=90)
        up.add("txt.example.org", "TXT", *(f'"{"x" * 200}{i}"' for i in range(4)), ttl=90)
    first.also_answer = True  # forged replies are followed by the genuine one
    yield first, second
    first.close()
    second.close()


def test_forwarded_at_once_is_byte_identical_to_the_general_path(
        upstreams: tuple[DnsUpstream, DnsUpstream]) -> None:
    first, second = upstreams
    fwd = Forwarder(ForwardSettings(upstreams=(first.address, second.address),
                                    policy="sequential", read_timeout=1.0), None, ForwardStats())
    # No rotation: each path would otherwise take its own turn of the RRset.
    pipeline = Pipeline(Settings([Zone(name_labels("skydns.test"))], shuffle=False),
                        forwarder=fwd)
    passed_on: list[bytes] = []

    def general(data: bytes, tcp: bool, peer: Any, send: Any) -> bytes | None:
        passed_on.append(data)
        return pipeline.handle(data, tcp, peer, send)

    async def main() -> list[tuple[str, bytes, bytes]]:
        slow = UdpServer(_bound(), pipeline.handle)  # every query to the loop
        fast = UdpServer(_bound(), general, pipeline.quick)
        fwd.read_with(fast, asyncio.get_running_loop())  # as the app does
        slow.start(asyncio.get_running_loop())
        fast.start(asyncio.get_running_loop())
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        client.setblocking(False)
        try:
            await _ask(client, slow, dns.message.make_query("warm.example.org", "A"))
            out = []
            for name, mode, how in CASES:
                first.mode = mode
                qtype = "TXT" if name.startswith("txt") else "AAAA" if "ixed" in name else "A"
                q = _query(name, qtype, how)
                replies = []
                for server in (slow, fast):
                    first.reset()
                    second.reset()
                    before = _counted(pipeline, fwd)
                    reply = await _ask(client, server, q)
                    upstream = [(s.name, s.rdtype, s.transport, s.edns, s.payload, s.do, s.rd)
                                for up in (first, second) for s in up.queries()]
                    replies.append((reply, upstream, _counted(pipeline, fwd) - before))
                assert replies[0][1] == replies[1][1], (name, mode)  # the same upstream queries
                assert replies[0][2] == replies[1][2], (name, mode)  # counted the same
                out.append((f"{name} {mode}", replies[0][0], replies[1][0]))
            return out
        finally:
            client.close()
            slow.close()
            fast.close()
            fwd.close()

    pairs = eventloop.run(main())
    for case, slow_reply, fast_reply in pairs:
        assert fast_reply == slow_reply, case
    assert passed_on == [], "the fast server passed queries on to the loop"
    parsed = [dns.message.from_wire(slow) for _, slow, _ in pairs]
    assert all(SPOOFED not in m.to_text() for m in parsed)  # forged replies were not taken
    assert [m.rcode() for m in parsed].count(3) == 2  # the NXDOMAIN cases
    assert sum(bool(m.flags & dns.flags.TC) for m in parsed) == 1  # the 512-byte client


def test_replies_that_may_rotate_are_not_relayed_raw(
        upstreams: tuple[DnsUpstream, DnsUpstream]) -> None:
    """With --shuffle an RRset turns from one fresh reply to the next; a raw relay cannot
    turn it, so such replies take the general path even when nothing is cached."""
    first = upstreams[0]
    fwd = Forwarder(ForwardSettings(upstreams=(first.address,)), None, ForwardStats())
    pipeline = Pipeline(Settings([Zone(name_labels("skydns.test"))], shuffle=True),
                        forwarder=fwd)
    q = dns.message.make_query("many.example.org", "A")
    orders = [[rr.to_text() for rr in dns.message.from_wire(r).answer[0]]
              for r in _fast(pipeline, fwd, [q] * 3)]
    assert len(orders[0]) == 8
    assert orders[0] != orders[1] != orders[2]  # each a turn further
    assert sorted(orders[0]) == sorted(orders[1]) == sorted(orders[2])


def test_a_stub_domain_is_forwarded_at_once_to_its_own_upstream(
        upstreams: tuple[DnsUpstream, DnsUpstream]) -> None:
    """The stage takes the pool of the name (``Forwarder.only_pool`` is for a forwarder
    with no stubs); each reply's duration is counted for the upstream that sent it."""
    first, second = upstreams
    second.add("www.stub.example.org", "A", "192.0.2.7", ttl=60)
    fwd = Forwarder(ForwardSettings(upstreams=(first.address,),
                                    stubs=(("stub.example.org", (second.address,)),)),
                    None, ForwardStats())
    pipeline = Pipeline(Settings([Zone(name_labels("skydns.test"))], shuffle=False),
                        forwarder=fwd)
    asked = [dns.message.make_query(name, "A")
             for name in ("www.stub.example.org", "plain.example.org", "nx.stub.example.org")]
    replies = [dns.message.from_wire(r) for r in _fast(pipeline, fwd, asked)]
    assert [str(m.answer[0][0]) if m.answer else m.rcode() for m in replies] == \
        ["192.0.2.7", "192.0.2.1", dns.rcode.NXDOMAIN]
    assert [s.name for s in second.queries()] == ["www.stub.example.org.",
                                                  "nx.stub.example.org."]
    assert [s.name for s in first.queries()] == ["plain.example.org."]
    replied = {key: int(sum(b[:-1])) for key, b in fwd.stats.durations.items()}
    assert replied == {(second.address, "NOERROR"): 1, (first.address, "NOERROR"): 1,
                       (second.address, "NXDOMAIN"): 1}
    assert fwd.stats.requests_to == {second.address: 2, first.address: 1}


def test_a_held_query_that_cannot_be_sent_fails_over(
        upstreams: tuple[DnsUpstream, DnsUpstream]) -> None:
    """Queries forwarded at once while other replies are awaited are sent after the batch
    (``sockets.Outbox``); one whose send fails (here: the ICMP port unreachable of the
    query before, reported on the next send of the connected socket) fails over at once,
    counted as the general path counts. The first query, to a slow stub upstream, is what
    is awaited while the other two are read."""
    second = upstreams[1]
    second.delay = 0.3
    second.add("slow.stub.example.org", "A", "192.0.2.9", ttl=60)
    closed = _bound()
    dead = f"127.0.0.1:{closed.getsockname()[1]}"
    closed.close()  # nothing listens there: the kernel answers port unreachable
    fwd = Forwarder(ForwardSettings(upstreams=(dead, second.address), policy="sequential",
                                    read_timeout=0.5, sockets=1,
                                    stubs=(("stub.example.org", (second.address,)),)),
                    None, ForwardStats())
    pipeline = Pipeline(Settings([Zone(name_labels("skydns.test"))], shuffle=False),
                        forwarder=fwd)
    asked = [dns.message.make_query(name, "A") for name in
             ("slow.stub.example.org", "plain.example.org", "plain.example.org")]
    replies = [dns.message.from_wire(r) for r in _fast(pipeline, fwd, asked, together=True)]
    assert sorted(str(m.answer[0][0]) for m in replies) == \
        ["192.0.2.1", "192.0.2.1", "192.0.2.9"]
    # the first held timed out (the refusal came after it was sent), the second was refused
    assert fwd.stats.failures == {(dead, "timeout"): 1, (dead, "network"): 1}
    assert fwd.stats.requests_to == {dead: 2, second.address: 3}
    assert fwd.in_flight() == 0


def test_a_lone_query_is_sent_at_once(upstreams: tuple[DnsUpstream, DnsUpstream]) -> None:
    """With no other reply awaited there is no batch to join: ``send_now`` sends the query
    itself, it is not held for the reading thread's next pass (here no thread runs, and
    the loop is not given a turn until the upstream has the query)."""
    first = upstreams[0]
    fwd = Forwarder(ForwardSettings(upstreams=(first.address,)), None, ForwardStats())
    outcomes: list[object] = []

    async def main() -> None:
        server = UdpServer(_bound(), lambda *_: None)
        fwd.read_with(server, asyncio.get_running_loop())
        try:
            key = Key(name_labels("plain.example.org"), 1, 1, False)
            body = dns.message.make_query("plain.example.org", "A").to_wire()[12:]
            assert fwd.send_now(key, body[:-4], dns.flags.RD, fwd.pools[0], outcomes.append)
            deadline = time.monotonic() + 2.0
            while not first.queries() and time.monotonic() < deadline:
                time.sleep(0.01)  # blocking: the loop's callbacks do not run meanwhile
            assert [q.name for q in first.queries()] == ["plain.example.org."]
            await asyncio.sleep(0.3)  # now the reply is read
            assert len(outcomes) == 1
        finally:
            fwd.close()
            server.close()

    eventloop.run(main())


def _fast(pipeline: Pipeline, fwd: Forwarder, asked: list[dns.message.Message],
          together: bool = False) -> list[bytes]:
    """The replies to ``asked`` through a UDP server whose reading thread forwards at once;
    every query must be taken that way. In turn, or ``together``: all sent before the
    server starts, so that its thread reads them in one batch (the replies come in the
    order they are ready)."""
    passed_on: list[bytes] = []

    def general(data: bytes, tcp: bool, peer: Any, send: Any) -> bytes | None:
        passed_on.append(data)
        return pipeline.handle(data, tcp, peer, send)

    async def main() -> list[bytes]:
        loop = asyncio.get_running_loop()
        fast = UdpServer(_bound(), general, pipeline.quick)
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        client.setblocking(False)
        try:
            for q in asked if together else []:
                client.sendto(q.to_wire(), fast.sock.getsockname())
            fwd.read_with(fast, loop)
            fast.start(loop)
            if together:
                return [await asyncio.wait_for(loop.sock_recv(client, 65535), 5.0)
                        for _ in asked]
            return [await _ask(client, fast, q) for q in asked]
        finally:
            client.close()
            fast.close()
            fwd.close()

    replies = eventloop.run(main())
    assert passed_on == [], "the fast server passed queries on to the loop"
    return replies


def _query(name: str, qtype: str, how: dict[str, Any]) -> dns.message.Message:
    """A query made as ``how`` says; its "flags", if given, replace RD."""
    how = dict(how)
    flags = how.pop("flags", dns.flags.RD)
    q = dns.message.make_query(name, qtype, **how)
    q.flags = flags | (dns.flags.CD if how.get("want_dnssec") else 0)
    return q


def _counted(pipeline: Pipeline, fwd: Forwarder) -> Counter[object]:
    """What the metrics count (``coredns_dns_*`` and ``coredns_forward_*``), durations
    left out (one path is slower), and the sockets opened (they are shared)."""
    out: Counter[object] = Counter()
    tally = pipeline.stats.tally
    for stat, n in zip(tally.stats, tally.counts, strict=True):
        out[stat._replace(duration_bucket=0)] += n
    stats = fwd.stats
    for name, counter in (("counters", stats.counters), ("requests_to", stats.requests_to),
                          ("failures", stats.failures)):
        for key, n in counter.items():
            out[(name, key)] += n
    for key, buckets in stats.durations.items():
        out[("replies", key)] += int(sum(buckets[:-1]))
    return out


def _bound() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


async def _ask(client: socket.socket, server: UdpServer, q: dns.message.Message) -> bytes:
    loop = asyncio.get_running_loop()
    await loop.sock_sendto(client, q.to_wire(), server.sock.getsockname())
    return await asyncio.wait_for(loop.sock_recv(client, 65535), 5.0)
