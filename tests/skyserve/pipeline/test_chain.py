"""The chain's promise: an exception in any stage still answers SERVFAIL, over UDP and over
TCP, and counts ``coredns_panics_total``.

The pipeline runs behind the real transports on loopback sockets, in-process. The
exception comes from data no etcd value can produce (a record whose TTL is negative, which
``decode_record`` would reject), so rendering the answer fails inside the zones stage.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading
from collections.abc import Iterator

import dns.message
import dns.query
import dns.rcode
import pytest
from prometheus_client.parser import text_string_to_metric_families

from skydns.netaddr import bind
from skydns.record import Record, key_path, name_labels
from skyserve import metrics
from skyserve.index import Index
from skyserve.lookup import Zone
from skyserve.pipeline.chain import Pipeline
from skyserve.pipeline.context import Settings
from skyserve.transport import TcpServer
from skyserve.udp import UdpServer

ZONE = Zone(name_labels("skydns.test"))
BROKEN = "/skydns/test/skydns/broken"


def pipeline() -> Pipeline:
    index = Index()
    path = key_path(BROKEN)
    assert path is not None
    index.put(path, Record(BROKEN, host="10.0.0.1", ttl=-1,
                           address=ipaddress.ip_address("10.0.0.1").packed))
    index.put(("test", "skydns", "fine"), Record("/skydns/test/skydns/fine", host="10.0.0.2",
                                                 address=ipaddress.ip_address("10.0.0.2").packed))
    p = Pipeline(Settings([ZONE]))
    p.load(index, 7)
    return p


def panics(p: Pipeline) -> float:
    text = metrics.render(metrics.registry(
        lambda: metrics.snapshot(p.stats, "dns://test", ["skydns.test."]))).decode()
    [family] = [f for f in text_string_to_metric_families(text) if f.name == "coredns_panics"]
    return sum(s.value for s in family.samples if s.name == "coredns_panics_total")


def test_a_stage_that_raises_answers_servfail_in_process() -> None:
    p = pipeline()
    query = dns.message.make_query("broken.skydns.test", "A")
    reply = p.handle(query.to_wire())
    assert reply is not None
    answer = dns.message.from_wire(reply)
    assert answer.id == query.id and answer.rcode() == dns.rcode.SERVFAIL
    assert answer.question == query.question
    assert p.stats.panics == 1
    good = p.handle(dns.message.make_query("fine.skydns.test", "A").to_wire())
    assert good is not None and dns.message.from_wire(good).rcode() == dns.rcode.NOERROR


def listeners() -> tuple[socket.socket, socket.socket, int]:
    """UDP and TCP sockets on one free port (a port free for UDP may be taken for TCP)."""
    for _ in range(50):
        udp_sock = bind("127.0.0.1:0", socket.SOCK_DGRAM, what="DNS")
        port = udp_sock.getsockname()[1]
        try:
            return udp_sock, bind(f"127.0.0.1:{port}", socket.SOCK_STREAM, what="DNS"), port
        except OSError:
            udp_sock.close()
    raise RuntimeError("no port free for both UDP and TCP")


@pytest.fixture
def served() -> Iterator[tuple[Pipeline, int]]:
    """The pipeline behind real UDP and TCP listeners on 127.0.0.1, in a loop thread."""
    p = pipeline()
    udp_sock, tcp_sock, port = listeners()
    loop = asyncio.new_event_loop()
    udp, tcp = UdpServer(udp_sock, p.handle), TcpServer(tcp_sock, p.handle)
    started = threading.Event()

    async def run() -> None:
        udp.start(loop)
        await tcp.start()
        started.set()
        while not stopping.is_set():
            await asyncio.sleep(0.02)
        udp.close()
        await tcp.close()

    stopping = threading.Event()
    thread = threading.Thread(target=loop.run_until_complete, args=(run(),), daemon=True)
    thread.start()
    assert started.wait(5)
    try:
        yield p, port
    finally:
        stopping.set()
        thread.join(5)
        loop.close()


def test_servfail_over_udp_and_tcp_and_counted(served: tuple[Pipeline, int]) -> None:
    p, port = served
    query = dns.message.make_query("broken.skydns.test", "A")
    by_udp = dns.query.udp(query, "127.0.0.1", port=port, timeout=2)
    by_tcp = dns.query.tcp(query, "127.0.0.1", port=port, timeout=2)
    assert by_udp.rcode() == by_tcp.rcode() == dns.rcode.SERVFAIL
    assert panics(p) == 2
    fine = dns.query.tcp(dns.message.make_query("fine.skydns.test", "A"), "127.0.0.1",
                         port=port, timeout=2)
    assert fine.rcode() == dns.rcode.NOERROR  # the connection and the server live on
