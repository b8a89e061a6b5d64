"""DNS over UDP and TCP sockets; no DNS logic here, only moving bytes to a handler.

UDP does not use asyncio's DatagramProtocol: its one-datagram-per-loop-iteration costs
about 50 microseconds a query, more than answering does. Instead the socket is registered
with ``add_reader`` and drained, up to ``DRAIN`` datagrams per wake-up.

TCP uses asyncio streams; several queries may be pipelined on one connection (RFC 7766),
and an idle connection is closed after ``TCP_IDLE`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Send = Callable[[bytes, Any], None]
# handler(query, tcp, peer, send) -> reply now, or None (dropped, or sent later via send)
Handler = Callable[[bytes, bool, Any, Send], "bytes | None"]

DRAIN = 64
TCP_IDLE = 10.0


class UdpServer:
    def __init__(self, sock: socket.socket, handler: Handler) -> None:
        self.sock = sock
        self.handler = handler  # never raises: the pipeline answers its own errors
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        loop.add_reader(self.sock.fileno(), self._drain)

    def stop_reading(self) -> None:
        """Take no new queries; replies to forwarded ones can still be sent."""
        if self._loop is not None:
            self._loop.remove_reader(self.sock.fileno())
            self._loop = None

    def close(self) -> None:
        self.stop_reading()
        self.sock.close()

    def send(self, reply: bytes, peer: Any) -> None:
        """Send a reply that was produced later (forwarded queries)."""
        try:
            self.sock.sendto(reply, peer)
        except OSError:
            log.debug("udp send to %s failed", peer, exc_info=True)

    def _drain(self) -> None:
        recvfrom, sendto = self.sock.recvfrom, self.sock.sendto
        handler, send = self.handler, self.send
        for _ in range(DRAIN):
            try:
                data, peer = recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                log.debug("udp receive failed", exc_info=True)
                return
            reply = handler(data, False, peer, send)
            if reply is not None:
                try:
                    sendto(reply, peer)
                except OSError:
                    log.debug("udp send to %s failed", peer, exc_info=True)


class TcpServer:
    def __init__(self, sock: socket.socket, handler: Handler) -> None:
        self.sock = sock
        self.handler = handler  # never raises: the pipeline answers its own errors
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, sock=self.sock)

    async def close(self, grace: float = 2.0) -> None:
        """Stop accepting; let connections finish their current query for ``grace`` s."""
        if self._server is not None:
            self._server.close()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=grace)
            for task in self._tasks:
                task.cancel()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while True:
                head = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE)
                data = await asyncio.wait_for(
                    reader.readexactly(int.from_bytes(head, "big")), TCP_IDLE
                )
                reply = self.handler(data, True, writer, _send_tcp)
                if reply is not None:
                    writer.write(len(reply).to_bytes(2, "big") + reply)
                    await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()


def _send_tcp(reply: bytes, writer: Any) -> None:
    """Replies to forwarded queries may come out of order on one connection (RFC 7766 s7)."""
    if not writer.is_closing():
        writer.write(len(reply).to_bytes(2, "big") + reply)
