"""A spoofed-source style UDP flood on loopback: client sockets bound to many addresses of
one /24 (every 127.0.0.0/8 address is local, and rate limiting counts per /24) send queries
at a fixed rate while a legitimate client in another /24 asks at its own rate; every byte
sent and received is counted per query kind, and every reply classed as a full answer or a
truncated one (TC set). What was never answered is what the server dropped."""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from benchkit.ampzone import Kind

EDNS_SIZE = 4096  # what an attacker advertises, to get the largest reply the server sends


def query_wire(qid: int, kind: Kind, edns_size: int = EDNS_SIZE) -> bytes:
    """A query without RD (to an authoritative server) with an EDNS0 OPT record."""
    qname = b"".join(bytes([len(p)]) + p.encode() for p in kind.name.rstrip(".").split("."))
    return (struct.pack(">6H", qid, 0, 1, 0, 0, 1) + qname + b"\0"
            + struct.pack(">2H", kind.qtype, 1)
            + b"\0" + struct.pack(">HHIH", 41, edns_size, 0, 0))


def reply_counts(data: bytes) -> tuple[int, int, bool]:
    """(rcode, answer count, truncated) of a reply."""
    _qid, flags, _qd, an = struct.unpack(">4H", data[:8])
    return flags & 0xF, an, bool(flags & 0x0200)


@dataclass
class Tally:
    """Queries and replies of one kind: counts and DNS message bytes (UDP payloads)."""
    sent: int = 0
    sent_bytes: int = 0
    full: int = 0
    truncated: int = 0
    recv_bytes: int = 0
    full_bytes: int = 0
    full_steady: int = 0  # full answers to queries sent after the warm-up

    def query(self, wire: bytes) -> None:
        self.sent += 1
        self.sent_bytes += len(wire)

    def reply(self, data: bytes, steady: bool) -> None:
        self.recv_bytes += len(data)
        if reply_counts(data)[2]:
            self.truncated += 1
        else:
            self.full += 1
            self.full_bytes += len(data)
            self.full_steady += steady

    def summary(self, seconds: float, warm: float) -> dict[str, float]:
        sent = max(1, self.sent)
        return {"sent": self.sent, "query_bytes": self.sent_bytes / sent,
                "full_bytes": self.full_bytes / max(1, self.full),
                "amplification": self.recv_bytes / max(1, self.sent_bytes),
                # reply bytes per query byte over the queries not answered fully: what a
                # limiter sends beyond its limit (1 when every one gets a query-sized TC)
                "beyond_amplification": (self.recv_bytes - self.full_bytes)
                / max(1, (self.sent - self.full) * self.sent_bytes / sent),
                "full_pct": 100 * self.full / sent, "tc_pct": 100 * self.truncated / sent,
                "none_pct": 100 * (self.sent - self.full - self.truncated) / sent,
                "full_per_s": self.full / seconds,
                "steady_full_per_s": self.full_steady / max(1e-9, seconds - warm)}


@dataclass
class Client:
    """Sockets sending one query stream, round robin over kinds (and over the sockets)."""
    socks: list[socket.socket]
    kinds: tuple[Kind, ...]
    rate: float
    tallies: dict[str, Tally] = field(default_factory=dict)
    # (fd, qid) -> (kind, sent after the warm-up)
    pending: dict[tuple[int, int], tuple[str, bool]] = field(default_factory=dict)
    count: int = 0

    def __post_init__(self) -> None:
        self.tallies = {k.label: Tally() for k in self.kinds}

    def due(self, t0: float) -> float:
        return t0 + self.count / self.rate

    def send(self, port: int, steady: bool) -> None:
        sock = self.socks[self.count % len(self.socks)]
        kind = self.kinds[self.count % len(self.kinds)]
        qid = self.count & 0xFFFF
        wire = query_wire(qid, kind)
        self.count += 1
        # a full send buffer counts as a query the server never answered
        with contextlib.suppress(OSError):
            sock.sendto(wire, ("127.0.0.1", port))
        self.tallies[kind.label].query(wire)
        self.pending[(sock.fileno(), qid)] = kind.label, steady

    def receive(self, sock: socket.socket) -> None:
        while True:
            try:
                data = sock.recv(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # an ICMP error reported on the socket: nothing to count
                continue
            sent = self.pending.pop((sock.fileno(), struct.unpack(">H", data[:2])[0]), None)
            if sent is not None:  # a duplicate or stray datagram is not a reply
                self.tallies[sent[0]].reply(data, sent[1])


def bound_sockets(addresses: list[str]) -> list[socket.socket]:
    out = []
    for addr in addresses:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((addr, 0))
        s.setblocking(False)
        out.append(s)
    return out


def flood(port: int, attack: Client, legit: Client, seconds: float, warm: float,
          grace: float) -> dict[str, Any]:
    """Send both streams for ``seconds`` at their rates, then wait ``grace`` for replies;
    full answers are also counted apart for queries sent after ``warm`` seconds, when a
    rate limiter's initial credit is spent."""
    sel = selectors.DefaultSelector()
    owner = {}
    for client in (attack, legit):
        for s in client.socks:
            sel.register(s, selectors.EVENT_READ)
            owner[s.fileno()] = client
    t0 = time.monotonic()
    stop_sending, end = t0 + seconds, t0 + seconds + grace
    try:
        while (now := time.monotonic()) < end:
            nexts = []
            for client in (attack, legit):
                while now < stop_sending and client.due(t0) <= now:
                    client.send(port, now >= t0 + warm)
                if now < stop_sending:
                    nexts.append(client.due(t0))
            for key, _ in sel.select(max(0.0, min([*nexts, end]) - time.monotonic())):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                owner[sock.fileno()].receive(sock)
    finally:
        sel.close()
        for s in [*attack.socks, *legit.socks]:
            s.close()
    return {"attack": {k: t.summary(seconds, warm) for k, t in attack.tallies.items()},
            "legit": {k: t.summary(seconds, warm) for k, t in legit.tallies.items()}}


def probe(port: int, kind: Kind, timeout: float = 2.0) -> tuple[int, int, bool, int]:
    """One query of ``kind`` from 127.0.0.1: (rcode, answers, truncated, reply bytes)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(query_wire(4242, kind), ("127.0.0.1", port))
        data = s.recv(65535)
    return (*reply_counts(data), len(data))
