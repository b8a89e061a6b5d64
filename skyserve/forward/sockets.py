"""Moving bytes to and from upstream servers; no decisions here (those are ``policy``'s).

Each UDP query leaves from a randomly chosen socket of its upstream's set (each on its own
random port, connected to that upstream, replaced after ``SOCKET_USES`` queries) with a
random ID from the OS's CSPRNG. TCP opens one connection per query. Probes (health checks,
loop detection) use a socket of their own.

The UDP sockets are read by ``Readers``: the event loop by default; in skyserve the UDP
server's reading thread (``udp.UdpServer``), so that a forwarded query and its reply
are handled by one thread, with no hand-over between two. The queries that thread forwards
leave together after each batch it reads (``Outbox``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
from collections.abc import Callable, Sized
from typing import Protocol

from .policy import Attempt, Upstream

SOCKET_USES = 4096


class UdpSocket:
    """A UDP socket on a random port, connected to one upstream.

    Connected, so the kernel delivers only that upstream's datagrams and send/recv skip
    a route lookup per packet. ``pending`` maps the IDs in flight to their attempts.
    """

    __slots__ = ("pending", "sock", "uses")

    def __init__(self, up: Upstream) -> None:
        self.sock = socket.socket(up.family, socket.SOCK_DGRAM)
        try:
            self.sock.setblocking(False)
            self.sock.bind(("::" if up.family == socket.AF_INET6 else "0.0.0.0", 0))
            self.sock.connect(up.addr)
        except OSError:
            self.sock.close()
            raise
        self.pending: dict[int, Attempt] = {}
        self.uses = 0


class Readers(Protocol):
    """Who reads the upstream sockets; callbacks run on the loop's thread or holding its
    gate (``eventloop``)."""

    def watch(self, fd: int, callback: Callable[[], None], awaited: Sized) -> None:
        """Call ``callback`` whenever ``fd`` is readable, until ``unwatch``; ``awaited``
        is non-empty while a datagram is expected on it."""

    def unwatch(self, fd: int) -> None: ...

    def sent(self) -> None:
        """A query went upstream from the loop's thread: its reply must be read soon."""


class LoopReaders:
    """The event loop's ``add_reader``: the default."""

    def watch(self, fd: int, callback: Callable[[], None], awaited: Sized) -> None:
        asyncio.get_running_loop().add_reader(fd, callback)

    def unwatch(self, fd: int) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is already gone at exit
            asyncio.get_running_loop().remove_reader(fd)

    def sent(self) -> None:
        """The loop reads every socket it waits on."""


class Outbox:
    """Upstream queries forwarded from the UDP reading thread, held until it has read the
    datagrams that were waiting and then sent one after another.

    Each datagram to an upstream that sleeps waiting for work wakes it, and on loopback
    (or any upstream on this machine) the sender pays for that wake-up: about 2 us, as
    much as the rest of the send. Sent as each query is read, every query wakes the
    upstream again (it answers faster than we forward); sent back to back after the
    batch, one wake-up serves them all. The first query held rings ``bell`` (an eventfd
    the reading thread watches), so the sends go out on its next ``epoll`` pass, straight
    after the batch, before it waits for anything. A query forwarded while no other reply
    is awaited is not held: at low rates there is no batch, and the bell would cost an
    eventfd write and read and an ``epoll`` pass a query."""

    def __init__(self, failed: Callable[[Attempt, OSError], None]) -> None:
        self.bell = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.failed = failed  # a send failed: that attempt fails over as usual
        self._held: list[tuple[socket.socket, bytes, Attempt]] = []

    def hold(self, sock: socket.socket, datagram: bytes, q: Attempt) -> None:
        if not self._held:
            os.eventfd_write(self.bell, 1)
        self._held.append((sock, datagram, q))

    def send(self) -> None:
        """The bell rang: send what is held."""
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self.bell)
        held, self._held = self._held, []
        for sock, datagram, q in held:
            try:
                sock.send(datagram)
            except OSError as exc:
                self.failed(q, exc)

    def close(self) -> None:
        os.close(self.bell)


class UdpSockets:
    """The UDP sockets of every upstream, each watched by ``readers``."""

    def __init__(self, per_upstream: int, on_readable: Callable[[UdpSocket], None],
                 on_open: Callable[[Upstream], None], awaited: Sized) -> None:
        self.per_upstream = per_upstream
        self.on_readable = on_readable  # called when a socket has datagrams
        self.awaited = awaited  # non-empty while any reply is awaited
        self.on_open = on_open  # a new socket was needed (coredns_proxy_conn_cache_misses)
        self.readers: Readers = LoopReaders()  # set before the first socket is opened
        self._by_upstream: dict[Upstream, list[UdpSocket]] = {}
        self._retired: list[UdpSocket] = []

    def pick(self, up: Upstream) -> UdpSocket:
        """A socket to send on: a new one until the set is full, then one at random."""
        socks = self._by_upstream.get(up)
        if socks is None:  # not ``setdefault``: that makes a list each call
            socks = self._by_upstream[up] = []
        if len(socks) < self.per_upstream:
            s = self._open(up)
            socks.append(s)
            return s
        i = random_id() % len(socks)
        s = socks[i]
        s.uses += 1
        if s.uses >= SOCKET_USES:  # a fresh random port now and then
            fresh = self._open(up)  # first: if that fails, ``s`` stays in use
            self._retired.append(s)
            socks[i] = s = fresh
        return s

    def sweep_retired(self) -> bool:
        """Close retired sockets nothing waits on; True while some remain."""
        for s in [s for s in self._retired if not s.pending]:
            self._retired.remove(s)
            self._close(s)
        return bool(self._retired)

    def close(self) -> None:
        for socks in self._by_upstream.values():
            for s in socks:
                self._close(s)
        self._by_upstream.clear()
        for s in self._retired:
            self._close(s)
        self._retired.clear()

    def _open(self, up: Upstream) -> UdpSocket:
        self.on_open(up)
        s = UdpSocket(up)
        self.readers.watch(s.sock.fileno(), functools.partial(self.on_readable, s), self.awaited)
        return s

    def _close(self, s: UdpSocket) -> None:
        self.readers.unwatch(s.sock.fileno())
        s.sock.close()


async def tcp_exchange(up: Upstream, query: bytes) -> bytes:
    """One query over a new TCP connection; the reply's bytes."""
    reader, writer = await asyncio.open_connection(up.host, up.port)
    try:
        writer.write(len(query).to_bytes(2, "big") + query)
        await writer.drain()
        size = int.from_bytes(await reader.readexactly(2), "big")
        return await reader.readexactly(size)
    finally:
        writer.close()


async def probe(up: Upstream, query: bytes, timeout: float) -> bool:
    """One query to one upstream: a random ID, and only that upstream's reply counts."""
    loop = asyncio.get_running_loop()
    qid = os.urandom(2)
    with socket.socket(up.family, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, up.addr)
            await loop.sock_sendall(sock, qid + query[2:])
            data = await asyncio.wait_for(loop.sock_recv(sock, 65535), timeout)
        except (OSError, TimeoutError):
            return False
    return len(data) >= 12 and data[:2] == qid


_ids: list[int] = []


def random_id() -> int:
    """A query ID from the OS's CSPRNG, drawn 2048 at a time to spare a syscall per query
    (split into 16-bit numbers in C: a Python loop over them cost more than the draw)."""
    if not _ids:
        _ids.extend(memoryview(os.urandom(4096)).cast("H"))
    return _ids.pop()
