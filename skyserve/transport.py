"""DNS over TCP, and the handler types both transports share (UDP: ``udp``); no DNS logic
here, only moving bytes to a handler.

TCP uses asyncio streams; several queries may be pipelined on one connection (RFC 7766)
and deferred replies go out as they come, in any order. So that a hostile client cannot
exhaust it (RFC 7766 section 6.2.3): a connection is closed when no whole query arrives
within the idle timeout (which also ends slow senders: a query must arrive whole in that
time) or a reply cannot be written in it; a client address may hold only so many
connections; and at the total limit the connection idle longest makes room for a new one,
so new clients still get in when idle connections are hoarded.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

Send = Callable[[bytes, Any], None]
# handler(query, tcp, peer, send) -> reply now, or None (dropped, or sent later via send)
Handler = Callable[[bytes, bool, Any, Send], "bytes | None"]


@dataclass(frozen=True, slots=True)
class TcpLimits:
    idle: float = 10.0  # seconds a connection may wait for its next query (or a write)
    max_connections: int = 0  # in total (0: no limit)
    max_per_client: int = 0  # per client address (0: no limit)


class TcpPeer:
    """One TCP client connection: the ``peer`` the handler gets for a TCP query."""

    __slots__ = ("busy_count", "idle_since", "ip", "task", "writer")

    def __init__(self, ip: str, task: asyncio.Task[None], writer: asyncio.StreamWriter) -> None:
        self.ip = ip
        self.task = task
        self.writer = writer
        self.idle_since = time.monotonic()  # 0.0 while a query is being read or answered
        self.busy_count = 0  # replies being produced for it (``busy``)

    def get_extra_info(self, name: str) -> Any:
        return self.writer.get_extra_info(name)

    def is_closing(self) -> bool:
        return self.writer.is_closing()

    @contextmanager
    def busy(self) -> Iterator[None]:
        """While a reply is produced later (a zone transfer being built and sent): neither
        the idle timeout nor eviction ends the connection; the idle time starts after."""
        self.busy_count += 1
        self.idle_since = 0.0
        try:
            yield
        finally:
            self.busy_count -= 1
            if not self.busy_count:
                self.idle_since = time.monotonic()


def busy(peer: Any) -> AbstractContextManager[None]:
    """``TcpPeer.busy`` of a TCP peer; nothing for a UDP one (no connection to keep)."""
    return peer.busy() if isinstance(peer, TcpPeer) else nullcontext()


class TcpServer:
    def __init__(self, sock: socket.socket, handler: Handler, limits: TcpLimits = TcpLimits(),
                 counts: Counter[str] | None = None) -> None:
        self.sock = sock
        self.handler = handler  # never raises: the pipeline answers its own errors
        self.limits = limits  # may be replaced on reload; new connections see the new ones
        self.counts = counts if counts is not None else Counter()
        self._server: asyncio.Server | None = None
        self._conns: dict[asyncio.Task[None], TcpPeer] = {}
        self._per_ip: Counter[str] = Counter()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, sock=self.sock)

    async def close(self, grace: float = 2.0) -> None:
        """Stop accepting; let connections finish their current query for ``grace`` s."""
        if self._server is not None:
            self._server.close()
        if self._conns:
            await asyncio.wait(list(self._conns), timeout=grace)
            for task in list(self._conns):
                task.cancel()

    def _admit(self, ip: str) -> bool:
        limits = self.limits
        if limits.max_per_client and self._per_ip[ip] >= limits.max_per_client:
            self.counts["refused_per_client"] += 1
            return False
        if limits.max_connections and len(self._conns) >= limits.max_connections:
            idle = [c for c in self._conns.values() if c.idle_since]
            if not idle:
                self.counts["refused_total"] += 1
                return False
            oldest = min(idle, key=lambda c: c.idle_since)
            self.counts["evicted_idle"] += 1
            self._forget(oldest)
            oldest.task.cancel()
        return True

    def _forget(self, conn: TcpPeer) -> None:
        if self._conns.pop(conn.task, None) is not None:
            self._per_ip[conn.ip] -= 1
            if not self._per_ip[conn.ip]:
                del self._per_ip[conn.ip]

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        peer = writer.get_extra_info("peername")
        ip = str(peer[0]) if peer else ""
        if not self._admit(ip):
            writer.close()
            return
        conn = self._conns[task] = TcpPeer(ip, task, writer)
        self._per_ip[ip] += 1
        try:
            await self._serve(conn, reader, writer)
        except TimeoutError:
            self.counts["timeouts"] += 1
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._forget(conn)
            writer.close()

    async def _serve(self, conn: TcpPeer, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        while True:
            idle = self.limits.idle
            if not conn.busy_count:
                conn.idle_since = time.monotonic()
            head = await _next_query(conn, reader, idle)
            conn.idle_since = 0.0
            data = await asyncio.wait_for(reader.readexactly(int.from_bytes(head, "big")), idle)
            reply = self.handler(data, True, conn, _send_tcp)
            if reply is not None:
                writer.write(len(reply).to_bytes(2, "big") + reply)
                await asyncio.wait_for(writer.drain(), idle)


async def _next_query(conn: TcpPeer, reader: asyncio.StreamReader, idle: float) -> bytes:
    """The next query's length, once it comes; TimeoutError when the connection has been
    idle (not busy) for ``idle`` seconds."""
    read = asyncio.ensure_future(reader.readexactly(2))
    try:
        while True:
            wait = idle if conn.busy_count else conn.idle_since + idle - time.monotonic()
            if wait <= 0:
                raise TimeoutError
            done, _ = await asyncio.wait((read,), timeout=wait)
            if done:
                return read.result()
    finally:
        read.cancel()


def _send_tcp(reply: bytes, peer: Any) -> None:
    """Replies to forwarded queries may come out of order on one connection (RFC 7766 s7)."""
    if not peer.is_closing():
        peer.writer.write(len(reply).to_bytes(2, "big") + reply)
