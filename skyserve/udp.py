"""DNS over UDP; no DNS logic here, only moving bytes to a handler.

UDP does not use asyncio's DatagramProtocol: its one-datagram-per-loop-iteration costs
about 50 microseconds a query, more than answering does. On a ``GatedLoop``
(``eventloop``, how skyserve runs) a thread of its own reads the socket in a blocking
``recvfrom`` and, holding the loop's gate, answers what ``quick`` can (cached and direct
answers; plain forwarded queries it sends upstream, the reply going out later through
``send``); everything else goes to the loop's thread, to ``handler``. Elsewhere (tests on
a plain loop) the socket is registered with ``add_reader`` and drained, up to ``DRAIN``
datagrams per wake-up.

Batches: after its blocking receive the thread takes the datagrams already waiting, up to
``BATCH``, answers them under one acquisition of the gate and sends the replies back to
back. A batch keeps the hot code and data warm from one query to the next (between trips
through the kernel they go cold: a query costs about twice on the wire what it costs
in-process), and replies sent together find the client still awake more often (each
datagram to a sleeping peer costs the sender its wake-up). A look that finds nothing is a
wasted system call, the common case at low rates; so after such a look the thread looks
again only every ``PROBE`` queries, until a look finds some.
"""

from __future__ import annotations

import asyncio
import logging
import select
import socket
import threading
import time
from collections.abc import Callable, Sized
from contextlib import suppress
from typing import Any

from .transport import Handler, Send

log = logging.getLogger(__name__)

# quick(query, peer, send, start) -> a reply made at once without the event loop; b"" when
# the reply goes later through send; None to pass the query on to handler. ``start``: when
# the query was read (``time.perf_counter``), what its duration is measured from.
Quick = Callable[[bytes, Any, Send, float], "bytes | None"]

DRAIN = 64
BATCH = 32  # datagrams answered under one acquisition of the gate
PROBE = 16  # after a look found nothing, look again at every this many-th query

Query = tuple[bytes, Any]  # datagram, peer: what ``recvfrom`` returns, kept as it is
Replies = list[tuple[bytes, Any]]


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
        acquire, release, send = gate.acquire, gate.release, self.send
        clock = time.perf_counter
        ours, poll = self.sock.fileno(), self._epoll.poll
        plain, probe = True, 1
        try:
            while not self._stopping:
                if plain:  # as lean as can be: cache hits and direct answers come this way
                    try:
                        got = recvfrom(65535)
                    except OSError:
                        log.debug("udp receive failed", exc_info=True)
                        continue
                    start = clock()
                    data, peer = got
                    if probe > 1:
                        probe -= 1
                    else:
                        batch = [got]
                        if gather(batch, recvfrom):
                            probe = 1
                            batched = self._batch(batch, start, gate, later, sendto)
                            if batched is None:
                                return
                            plain = batched
                            continue
                        probe = PROBE
                    # One datagram: inline, as before batches, for at low rates each extra
                    # Python call or allocation costs several times its in-process price
                    # (measured: +1.7 us a query at 20,000 QPS through ``_batch``). The
                    # gate by hand, not ``with``: a few percent of a cache hit's cost.
                    acquire()
                    try:
                        quick = self.quick
                        reply = quick(data, peer, send, start) if quick and data else None
                        # Only a query that got no reply (sent upstream, handed to the
                        # loop's thread, or a wake-up) can have changed what is awaited.
                        if not reply:
                            if reply is None:
                                self._hand_on(data, peer, later)
                            plain = self._plain = not any(self._awaited)
                    except RuntimeError:  # the loop has closed: we are done
                        return
                    finally:
                        release()
                    if reply:
                        try:
                            sendto(reply, peer)
                        except OSError:
                            log.debug("udp send to %s failed", peer, exc_info=True)
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

    def _batch(self, batch: list[Query], start: float, gate: threading.Lock,
               later: Callable[..., object],
               sendto: Callable[[bytes, Any], object]) -> bool | None:
        """Several datagrams from the plain path, read from ``start`` on, answered under
        one acquisition of the gate, the replies then sent back to back: whether the
        thread may go on waiting on our socket alone; None once it must end."""
        with gate:
            try:
                replies, plain = self._answer_all(batch, start, later)
            except RuntimeError:  # the loop has closed: we are done
                return None
        send_all(sendto, replies)
        return plain

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
            start = time.perf_counter()
            gather(batch, recvfrom)
            try:
                replies += self._answer_all(batch, start, later)[0]
            except RuntimeError:  # the loop has closed: we are done
                return None
        return replies

    def _answer_all(self, batch: list[Query], start: float,
                    later: Callable[..., object]) -> tuple[Replies, bool]:
        """A batch of datagrams, holding the gate: the replies to send now, and whether the
        thread may go on waiting on our socket alone. Each query's duration counts from
        ``start``, when the batch's first datagram was read: the others came within
        microseconds, and a clock reading and a tuple each would cost ~0.1 µs a query."""
        quick, send = self.quick, self.send
        replies: Replies = []
        settled = True
        for data, peer in batch:
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


def gather(batch: list[Query], recvfrom: Callable[..., Query]) -> bool:
    """Add to ``batch`` the datagrams waiting now, up to ``BATCH`` in all; whether any
    were."""
    had = len(batch)
    for _ in range(BATCH - had):
        try:
            batch.append(recvfrom(65535, socket.MSG_DONTWAIT))
        except (BlockingIOError, InterruptedError):
            break
        except OSError:
            log.debug("udp receive failed", exc_info=True)
            break
    return len(batch) > had


def send_all(sendto: Callable[[bytes, Any], object], replies: Replies) -> None:
    """The replies, back to back, in the order their queries came; a failed send is
    logged, the others still go."""
    for reply, peer in replies:
        try:
            sendto(reply, peer)
        except OSError:
            log.debug("udp send to %s failed", peer, exc_info=True)
