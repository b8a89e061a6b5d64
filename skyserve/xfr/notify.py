"""NOTIFY (RFC 1996) to a zone's secondaries after it changes: coalesced, retried, bounded.

A change to a zone schedules one NOTIFY per secondary ``DELAY`` seconds later, so the
writes of a burst share it; while one to that secondary is still in flight, or started less
than ``INTERVAL`` ago, later changes only make sure another follows — at most one NOTIFY
per secondary per ``INTERVAL``, however fast etcd is written. Before sending, the zone is
brought up to date, so the serial announced is one a transfer will get. Each NOTIFY is
sent over UDP, signed with the zone's first ``--transfer-key`` if it has one, and
retransmitted after 1, 2, 4 and 8 seconds until answered; then it is given up (the
secondary still refreshes on the SOA's refresh timer).
"""

from __future__ import annotations

import asyncio
import logging
import random
import struct
import time

from ..wire import constants as T
from ..wire.constants import MAX_TCP, QR, rcode_name
from ..wire.query import Query, encode_name
from ..wire.render import render
from .message import soa
from .primary import Primary, ZoneState
from .tsig import Signer

log = logging.getLogger(__name__)

DELAY = 0.05
INTERVAL = 0.5
TIMEOUTS = (1.0, 2.0, 4.0, 8.0, 8.0)
NOTIFY_OPCODE = 4

Target = tuple[str, int]


class Notifier:
    def __init__(self, primary: Primary) -> None:
        self.primary = primary
        self.stats = primary.stats
        self._busy: dict[tuple[str, Target], float] = {}  # -> time.monotonic() it started
        self._again: set[tuple[str, Target]] = set()
        self._tasks: set[asyncio.Future[None]] = set()
        primary.on_change = self.schedule

    def schedule(self, state: ZoneState) -> None:
        policy = self.primary.transfers.zones[state.zone.text]
        loop = asyncio.get_running_loop()
        for target in policy.notify:
            job = (state.zone.text, target)
            if job in self._busy:
                self._again.add(job)
                continue
            self._busy[job] = time.monotonic() + DELAY
            loop.call_later(DELAY, self._start, state, target)

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()

    def _start(self, state: ZoneState, target: Target) -> None:
        task = asyncio.ensure_future(self._notify(state, target))
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._done(t, state, target))

    def _done(self, task: asyncio.Future[None], state: ZoneState, target: Target) -> None:
        self._tasks.discard(task)
        job = (state.zone.text, target)
        started = self._busy.pop(job)
        if job in self._again:
            self._again.discard(job)
            self._busy[job] = started
            wait = max(DELAY, started + INTERVAL - time.monotonic())
            asyncio.get_running_loop().call_later(wait, self._restart, state, target)

    def _restart(self, state: ZoneState, target: Target) -> None:
        self._busy[(state.zone.text, target)] = time.monotonic()
        self._start(state, target)

    async def _notify(self, state: ZoneState, target: Target) -> None:
        zone, primary = state.zone.text, self.primary
        await primary.current(state)
        message = self._message(state)
        for timeout in TIMEOUTS:
            self.stats.notifies[(zone, _text(target), "sent")] += 1
            rcode = await _exchange(message, target, timeout)
            if rcode is not None:
                self.stats.notifies[(zone, _text(target), rcode_name(rcode))] += 1
                return
        self.stats.notifies[(zone, _text(target), "failed")] += 1
        log.warning("NOTIFY of %s to %s: no answer after %d tries", zone, _text(target),
                    len(TIMEOUTS))

    def _message(self, state: ZoneState) -> bytes:
        """A NOTIFY for the zone carrying its current SOA, signed if the zone has a key."""
        primary, zone = self.primary, state.zone
        assert primary.source is not None
        flags = NOTIFY_OPCODE << 11 | T.AA
        query = Query(random.randrange(65536), flags, encode_name(zone.labels), zone.labels,
                      T.SOA, T.CLASS_IN)
        answer = [[soa(primary.source.authority, zone, primary.serial())]]
        wire = bytearray(render(query, 0, (answer, [], []), limit=MAX_TCP, aa=True, ra=False,
                                max_udp=MAX_TCP).wire)
        wire[2] &= ~(QR >> 8) & 0xFF  # render makes replies; this is a request
        keys = primary.transfers.zones[zone.text].keys
        if keys:
            return Signer(primary.transfers.keys[keys[0]]).sign(bytes(wire))
        return bytes(wire)


class _Reply(asyncio.DatagramProtocol):
    def __init__(self, qid: int) -> None:
        self.qid = qid
        self.rcode: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: object) -> None:
        if len(data) >= 4 and not self.rcode.done():
            qid, flags = struct.unpack_from("!HH", data)
            if qid == self.qid and flags & QR and (flags >> 11) & 0xF == NOTIFY_OPCODE:
                self.rcode.set_result(flags & 0xF)


async def _exchange(message: bytes, target: Target, timeout: float) -> int | None:
    """Send once and wait for the answer's rcode; None on timeout or a socket error."""
    loop = asyncio.get_running_loop()
    qid = struct.unpack_from("!H", message)[0]
    try:
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: _Reply(qid), remote_addr=target)
    except OSError:
        await asyncio.sleep(timeout)
        return None
    try:
        transport.sendto(message)
        return await asyncio.wait_for(protocol.rcode, timeout)
    except (TimeoutError, OSError):
        return None
    finally:
        transport.close()


def _text(target: Target) -> str:
    host, port = target
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
