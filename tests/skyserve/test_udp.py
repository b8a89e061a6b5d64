"""The UDP reading thread's batches (``udp.UdpServer._read``): the
datagrams waiting when the thread starts are read together, then answered holding the
gate, then the replies sent. Real sockets, a real ``GatedLoop``."""

from __future__ import annotations

import asyncio
import fcntl
import socket
import struct
import termios
import threading
import time
from typing import Any

from skyserve import eventloop
from skyserve.udp import BATCH, UdpServer


def _bound() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


def _client() -> socket.socket:
    client = _bound()
    client.settimeout(5)
    return client


def _waiting(sock: socket.socket) -> int:
    """Bytes in the first datagram waiting on ``sock`` (0: none, or an empty one)."""
    got = fcntl.ioctl(sock.fileno(), termios.FIONREAD, struct.pack("i", 0))
    return int(struct.unpack("i", got)[0])


def _replies(client: socket.socket, count: int) -> list[bytes]:
    return [client.recv(100) for _ in range(count)]


def test_a_full_queue_is_answered_each_reply_to_its_own_peer_in_order() -> None:
    """More than a batch is waiting when the thread starts, from several clients."""
    clients = [_client() for _ in range(3)]
    sock = _bound()
    per_client = BATCH  # three clients: the queue holds three batches' worth
    for i in range(per_client):
        for n, client in enumerate(clients):
            client.sendto(b"c%d-%d" % (n, i), sock.getsockname())

    def quick(data: bytes, peer: Any, send: Any, start: float) -> bytes | None:
        return b"re:" + data

    async def main() -> list[list[bytes]]:
        udp = UdpServer(sock, lambda *args: None, quick)
        udp.start(asyncio.get_running_loop())
        got = await asyncio.to_thread(lambda: [_replies(c, per_client) for c in clients])
        udp.close()
        return got

    got = eventloop.run(main())
    for n, replies in enumerate(got):
        assert replies == [b"re:c%d-%d" % (n, i) for i in range(per_client)]
    for client in clients:
        client.close()


def test_a_mixed_batch_is_read_before_it_is_answered_and_each_query_goes_its_way() -> None:
    """Cached (answered now), forwarded (b"": sent later through send) and handed on to
    the loop's thread (None), all in the batch read when the thread starts; the duration
    of each counts from its read, so every start comes before the first answer."""
    client = _client()
    sock = _bound()
    queries = [b"q1", b"d1", b"s1", b"q2", b"s2", b"d2", b"q3"]
    for query in queries:
        client.sendto(query, sock.getsockname())
    starts: list[float] = []
    answered: list[float] = []
    on_loop: list[str] = []

    def quick(data: bytes, peer: Any, send: Any, start: float) -> bytes | None:
        starts.append(start)
        answered.append(time.perf_counter())
        if data.startswith(b"d"):
            send(b"sent:" + data, peer)
            return b""
        return b"quick:" + data if data.startswith(b"q") else None

    def handler(data: bytes, tcp: bool, peer: Any, send: Any) -> bytes | None:
        on_loop.append(threading.current_thread().name)
        return b"loop:" + data

    async def main() -> set[bytes]:
        udp = UdpServer(sock, handler, quick)
        udp.start(asyncio.get_running_loop())
        got = await asyncio.to_thread(_replies, client, len(queries))
        udp.close()
        return set(got)

    assert eventloop.run(main()) == {b"quick:q1", b"quick:q2", b"quick:q3", b"sent:d1",
                                     b"sent:d2", b"loop:s1", b"loop:s2"}
    assert len(starts) == len(queries)  # each asked once
    assert max(starts) < min(answered)  # one batch, read in full before the first answer
    assert starts == sorted(starts)
    assert on_loop == [threading.current_thread().name] * 2
    client.close()


def test_stop_while_a_batch_is_in_hand_answers_it_then_reads_no_more() -> None:
    """The thread has read a batch and waits for the gate when the loop stops reading:
    what ``quick`` answers still goes out, nothing more goes to the loop's thread, and
    the thread ends without reading what comes after."""
    client = _client()
    sock = _bound()
    for query in (b"q1", b"s1", b"q2"):
        client.sendto(query, sock.getsockname())
    asked: list[bytes] = []

    def quick(data: bytes, peer: Any, send: Any, start: float) -> bytes | None:
        asked.append(data)
        return b"quick:" + data if data.startswith(b"q") else None

    def handler(data: bytes, tcp: bool, peer: Any, send: Any) -> bytes | None:
        return b"loop:" + data

    async def main() -> list[bytes]:
        udp = UdpServer(sock, handler, quick)
        udp.start(asyncio.get_running_loop())
        thread = udp._thread
        assert thread is not None
        # Holding the gate (this coroutine runs on the loop's thread) until the thread
        # has taken every datagram: it now waits for the gate with the batch in hand.
        for _ in range(500):
            if not _waiting(sock):
                break
            time.sleep(0.01)
        udp.stop_reading()
        got = await asyncio.to_thread(_replies, client, 2)
        await asyncio.to_thread(thread.join, 5)
        assert not thread.is_alive()
        client.sendto(b"q3", sock.getsockname())  # not read: the thread has ended
        await asyncio.sleep(0.1)
        udp.close()
        return got

    assert eventloop.run(main()) == [b"quick:q1", b"quick:q2"]
    assert asked == [b"q1", b"s1", b"q2"]  # s1 asked, but not handed on: stopping
    client.settimeout(0.2)
    try:
        extra = client.recv(100)
    except TimeoutError:
        extra = b""
    assert extra == b""
    client.close()
