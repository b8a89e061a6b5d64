"""DNS over UDP and TCP sockets; no DNS logic here, only moving bytes to a handler.

UDP does not use asyncio's DatagramProtocol: its one-datagram-per-loop-iteration costs
about 50 microseconds a query, more than answering does. On a ``GatedLoop``
(``eventloop``, how skyserve runs) a thread of its own reads the socket in a blocking
``recvfrom`` (and takes what else waits: ``udpbatch``) and, holding the loop's gate,
answers what ``quick`` can (cached and direct answers; plain forwarded queries it sends
upstream, the reply going out later through ``send``); everything else goes to the loop's
thread, to ``handler``. Elsewhere (tests on
a plain loop) the socket is registered with ``add_reader`` and drained, up to ``DRAIN``
datagrams per wake-up.

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
import select
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sized
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from dataclasses import dataclass
from typing import Any

from .udpbatch import PROBE, Query, Replies, gather, send_all

log = logging.getLogger(__name__)

Send = Callable[[bytes, Any], None]
# handler(query, tcp, peer, send) -> reply now, or None (dropped, or sent later via send)
Handler = Callable[[bytes, bool, Any, Send], "bytes | None"]
# quick(query, peer, send, start) -> a reply made at once without the event loop; b"" when
# the reply goes later through send; None to pass the query on to handler. ``start``: when
# the query was read (``time.perf_counter``), what its duration is measured from.
Quick = Callable[[bytes, Any, Send, float], "bytes | None"]

DRAIN = 64


@dataclass(frozen=True, slots=True)
class TcpLimits:
    idle: float = 10.0  # seconds a connection may wait for its next query (or a write)
    max_connections: int = 0  # in total (0: no limit)
    max_per_client: int = 0  # per client address (0: no limit)


class UdpServer:
    def __init__(self, sock: socket.socket, handler: Handler, quick: Quick | None = None) -> None:
        self.sock = sock
        self.handler = handler  # never raises: the pipeline answers its own errors
        self.quick = quick  # likewise; used only by the reading thread
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        # Other sockets the reading thread reads (``forward.sockets.Readers``): fd ->
        # (callback, what is non-empty while a datagram is awaited, read by the thread
        # rather than the loop); and each such collection once (``any`` of them is
        # asked after every query: truth tests in C, no call).
        self._watched: dict[int, tuple[Callable[[], None], Sized, bool]] = {}
        self._awaited: list[Sized] = []
        self._epoll = select.epoll()
        self._plain = False  # the thread waits in a receive on our socket only
        self._kicker: socket.socket | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        gate: threading.Lock | None = getattr(loop, "gate", None)
        if gate is None or self.quick is None:
            loop.add_reader(self.sock.fileno(), self._drain)
            return
        self._epoll.register(self.sock.fileno(), select.EPOLLIN)
        self._plain = True  # what the thread starts with
        self._thread = threading.Thread(target=self._read, args=(loop, gate),
                                        name="udp", daemon=True)
        self._thread.start()

    def stop_reading(self) -> None:
        """Take no new queries; replies to forwarded ones can still be sent (the sockets
        the thread watched are read by the loop from now on)."""
        if self._thread is not None:
            # Not joined: it may be waiting for the gate this thread holds. It ends after
            # the datagram in hand, at the latest on the wake-up datagram.
            self._stopping = True
            self._wake_reader()
            self._thread, self._plain = None, False  # no more wake-ups: it is ending
            assert self._loop is not None
            for fd, (callback, awaited, threaded) in self._watched.items():
                if threaded:
                    self._loop.add_reader(fd, callback)
                    self._watched[fd] = (callback, awaited, False)
        elif self._loop is not None:
            self._loop.remove_reader(self.sock.fileno())
        self._loop = None

    def close(self) -> None:
        started = self._thread is not None or self._stopping
        self.stop_reading()
        self.sock.close()
        if not started:  # else the thread closes it as it ends
            self._epoll.close()
        if self._kicker is not None:
            self._kicker.close()

    def send(self, reply: bytes, peer: Any) -> None:
        """Send a reply that was produced later (forwarded queries)."""
        try:
            self.sock.sendto(reply, socket.MSG_DONTWAIT, peer)
        except OSError:
            log.debug("udp send to %s failed", peer, exc_info=True)

    # -- reading other sockets (``forward.sockets.Readers``) ---------------------------

    def watch(self, fd: int, callback: Callable[[], None], awaited: Sized) -> None:
        """Read ``fd`` too: in the reading thread (holding the gate) if there is one, else
        on the loop. Called holding the gate."""
        threaded = self._thread is not None
        self._watched[fd] = (callback, awaited, threaded)
        if not any(a is awaited for a in self._awaited):
            self._awaited.append(awaited)
        if threaded:
            self._epoll.register(fd, select.EPOLLIN)
        else:
            asyncio.get_running_loop().add_reader(fd, callback)

    def unwatch(self, fd: int) -> None:
        entry = self._watched.pop(fd, None)
        if entry is None:
            return
        _, awaited, threaded = entry
        if not any(e[1] is awaited for e in self._watched.values()):
            self._awaited = [a for a in self._awaited if a is not awaited]
        if threaded:
            with suppress(OSError, ValueError):  # ValueError: the thread has ended
                self._epoll.unregister(fd)
            return
        with suppress(RuntimeError):  # the loop is already gone at exit
            asyncio.get_running_loop().remove_reader(fd)

    def sent(self) -> None:
        """A query went out from the loop's thread: if the reading thread waits on our
        socket alone, wake it to wait for the reply too."""
        if self._plain:
            self._wake_reader()

    # -- reading ---------------------------------------------------------------------

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

    def _read(self, loop: asyncio.AbstractEventLoop, gate: threading.Lock) -> None:
        """The reading thread. While no reply to a forwarded query is awaited, a blocking
        receive on a twin of our socket (one system call a query); otherwise ``epoll`` on
        it and the watched sockets, so a query and its upstream's reply are both handled
        here. Everything is done holding the gate; what ``quick`` cannot answer is handed
        to the loop's thread."""
        # Its own descriptor, blocking (deferred replies are sent with MSG_DONTWAIT).
        reader = self.sock.dup()
        reader.settimeout(None)
        recvfrom, sendto, later = reader.recvfrom, reader.sendto, loop.call_soon_threadsafe
        acquire, release, clock = gate.acquire, gate.release, time.perf_counter
        ours, poll = self.sock.fileno(), self._epoll.poll
        plain, probe = True, 1
        try:
            while not self._stopping:
                if plain:  # as lean as can be: cache hits and direct answers come this way
                    try:
                        data, peer = recvfrom(65535)
                    except OSError:
                        log.debug("udp receive failed", exc_info=True)
                        continue
                    batch = [(data, peer, clock())]
                    if probe > 1:
                        probe -= 1
                    else:
                        probe = 1 if gather(batch, recvfrom, clock) else PROBE
                    # The gate by hand, not ``with``: a few percent of a cache hit's cost.
                    acquire()
                    try:
                        replies, plain = self._answer_all(batch, later)
                    except RuntimeError:  # the loop has closed: we are done
                        return
                    finally:
                        release()
                    send_all(sendto, replies)
                    continue
                events = poll()
                with gate:
                    polled = self._polled(events, ours, recvfrom, later)
                    plain = self._plain = not any(self._awaited)
                if polled is None:
                    return
                send_all(sendto, polled)
        finally:
            reader.close()
            self._epoll.close()

    def _polled(self, events: list[tuple[int, int]], ours: int,
                recvfrom: Callable[..., tuple[bytes, Any]],
                later: Callable[..., object]) -> Replies | None:
        """What ``epoll`` reported, holding the gate: the replies to send; None once the
        thread must end."""
        replies: Replies = []
        for fd, _ in events:
            if fd != ours:
                watched = self._watched.get(fd)
                if watched is not None and not self._stopping:
                    watched[0]()
                continue
            if self._stopping:
                return None
            batch: list[Query] = []
            gather(batch, recvfrom, time.perf_counter)
            try:
                replies += self._answer_all(batch, later)[0]
            except RuntimeError:  # the loop has closed: we are done
                return None
        return replies

    def _answer_all(self, batch: list[Query],
                    later: Callable[..., object]) -> tuple[Replies, bool]:
        """A batch of datagrams, holding the gate: the replies to send now, and whether the
        thread may go on waiting on our socket alone."""
        quick, send = self.quick, self.send
        replies: Replies = []
        settled = True
        for data, peer, start in batch:
            reply = quick(data, peer, send, start) if quick is not None and data else None
            if reply:
                replies.append((reply, peer))
                continue
            # Only a query that got no reply (sent upstream, handed to the loop's thread,
            # or a wake-up) can have changed what is awaited.
            settled = False
            if reply is None:
                self._hand_on(data, peer, later)
        if not settled:
            self._plain = not any(self._awaited)
        return replies, settled or self._plain

    def _hand_on(self, data: bytes, peer: Any, later: Callable[..., object]) -> None:
        """A datagram ``quick`` did not answer, to the loop's thread (an empty one is a
        wake-up: nothing to answer). ``later`` raises RuntimeError once the loop has
        closed."""
        if data and not self._stopping:
            later(self._on_loop, data, peer)

    def _on_loop(self, data: bytes, peer: Any) -> None:
        """A query the reading thread passed on, answered on the loop's thread."""
        reply = self.handler(data, False, peer, self.send)
        if reply is not None:
            self.send(reply, peer)

    def _wake_reader(self) -> None:
        """End the blocking receive: an empty datagram to our own address."""
        host, port = self.sock.getsockname()[:2]
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1" if self.sock.family == socket.AF_INET else "::1"
        if self._kicker is None:
            self._kicker = socket.socket(self.sock.family, socket.SOCK_DGRAM)
        with suppress(OSError):
            self._kicker.sendto(b"", (host, port))


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
