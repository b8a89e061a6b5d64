"""The gated event loop and the UDP reading thread that shares its gate (real sockets)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

from skyserve import eventloop
from skyserve.eventloop import GatedLoop
from skyserve.udp import UdpServer


def test_the_loop_holds_the_gate_except_while_it_waits() -> None:
    seen: dict[str, bool] = {}

    def try_gate(label: str) -> None:
        got = loop.gate.acquire(timeout=0.2)
        seen[label] = got
        if got:
            loop.gate.release()

    async def main() -> int:
        t = threading.Thread(target=try_gate, args=("busy",))
        t.start()
        time.sleep(0.4)  # busy on the loop's thread: the gate stays taken
        t.join()
        t = threading.Thread(target=try_gate, args=("waiting",))
        t.start()
        await asyncio.sleep(0.4)  # waiting for events: the gate is free
        t.join()
        return 0

    loop = GatedLoop()
    try:
        assert loop.run_until_complete(main()) == 0
    finally:
        loop.close()
    assert seen == {"busy": False, "waiting": True}
    assert not loop.gate.locked()  # closed: let go


def test_quick_answers_come_from_the_thread_the_rest_from_the_loop() -> None:
    threads: dict[bytes, list[str]] = {}
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)

    def quick(data: bytes, peer: Any, send: Any, start: float) -> bytes | None:
        threads.setdefault(data, []).append(threading.current_thread().name)
        if data.startswith(b"d"):  # taken: its reply goes through send (later, in skyserve)
            send(b"sent:" + data, peer)
            return b""
        return b"quick:" + data if data.startswith(b"q") else None

    def handler(data: bytes, tcp: bool, peer: Any, send: Any) -> bytes | None:
        threads.setdefault(data, []).append(threading.current_thread().name)
        return b"loop:" + data

    async def main() -> int:
        udp = UdpServer(sock, handler, quick)
        udp.start(asyncio.get_running_loop())
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        client.setblocking(False)
        replies = set()
        for query in (b"q1", b"s1", b"q2", b"s2", b"d1"):
            client.sendto(query, sock.getsockname())
        for _ in range(100):
            await asyncio.sleep(0.01)  # the gate is free while the loop waits
            try:
                replies.add(client.recv(100))
            except BlockingIOError:
                continue
            if len(replies) == 5:
                break
        udp.close()
        client.close()
        assert replies == {b"quick:q1", b"quick:q2", b"loop:s1", b"loop:s2", b"sent:d1"}
        return 0

    assert eventloop.run(main()) == 0
    loop_thread = threading.current_thread().name
    assert threads[b"q1"] == ["udp"]
    assert threads[b"s1"] == ["udp", loop_thread]  # asked quick first, then the loop
    assert threads[b"d1"] == ["udp"]  # taken by quick: not passed on
    time.sleep(0.1)
    assert not [t for t in threading.enumerate() if t.name == "udp"]  # stopped by close
