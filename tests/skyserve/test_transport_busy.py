"""A TCP connection a reply is still being produced for (a zone transfer) is not idle: the
idle timeout starts when the reply is done, not while it is built (in process, loopback)."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

from skyserve.transport import Send, TcpLimits, TcpServer, busy

IDLE = 0.2
BUILD = 3 * IDLE  # longer than the idle timeout
TASKS: set[asyncio.Future[None]] = set()  # the replies being built


def handler(data: bytes, tcp: bool, peer: Any, send: Send) -> bytes | None:
    async def later() -> None:
        with busy(peer):
            await asyncio.sleep(BUILD)
            send(b"reply to " + data, peer)

    TASKS.add(task := asyncio.ensure_future(later()))
    task.add_done_callback(TASKS.discard)
    return None


async def exchange() -> tuple[bytes, float, bytes]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    server = TcpServer(sock, handler, TcpLimits(idle=IDLE))
    await server.start()
    try:
        reader, writer = await asyncio.open_connection(*sock.getsockname())
        writer.write(b"\x00\x05query")
        size = int.from_bytes(await asyncio.wait_for(reader.readexactly(2), 5), "big")
        reply = await asyncio.wait_for(reader.readexactly(size), 5)
        done = time.monotonic()
        rest = await asyncio.wait_for(reader.read(), 5)  # b"" once the server closes it
        closed_after = time.monotonic() - done
        writer.close()
        return reply, closed_after, rest
    finally:
        await server.close()
        sock.close()


def test_a_busy_connection_outlives_the_idle_timeout_then_idles_out() -> None:
    reply, closed_after, rest = asyncio.run(exchange())
    assert reply == b"reply to query"
    # Closed for idleness once the reply is done: not at once, and not never.
    assert rest == b"" and IDLE * 0.5 < closed_after < IDLE * 5
