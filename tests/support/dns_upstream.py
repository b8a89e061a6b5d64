"""A scriptable DNS server on loopback: the upstream that skyserve forwards to in tests.

Shaped like dnspython's ``tests/nanonameserver.py``: UDP and TCP on one port of 127.0.0.1
(port 0 picks a free one), served from its own thread, used as a context manager. Its
behaviour can be changed while it runs, by assigning attributes:

* ``records``: ``add(name, type, *rdata, ttl=...)`` fills the table it answers from; a name
  it does not know gets NXDOMAIN, a known name with another type NODATA, both with an SOA
  whose TTL and MINIMUM are ``soa_ttl`` and ``soa_minimum`` (RFC 2308 negative TTL).
  A ``CNAME`` entry is followed one step inside the table.
* ``delay``: seconds to wait before answering.
* ``shuffle``: whether RRsets go out in a random order (dnspython's default; True).
* ``mode``: ``ok``; ``servfail`` / ``refused`` (that rcode); ``drop`` (never answer);
  ``truncate`` (UDP: TC=1 and no records; TCP: the full answer); ``wrong_id``,
  ``wrong_question``, ``from_other_port`` (a forged reply carrying ``SPOOFED``: another ID,
  another question, or sent from another socket; with ``also_answer`` the genuine reply
  follows it); ``looping`` (every query is passed on to ``loop_to`` and the reply relayed
  back, at most ``loop_budget`` times, to build a forwarding loop into skyserve); and
  reply shapes a raw relay must leave to the full parse (``RESHAPED``): ``lower_case``
  (the question spelled in lower case), ``ext_rcode`` (BADVERS: an extended rcode in the
  OPT), ``after_opt`` (an A record after the OPT), ``trailing`` (bytes after the last
  record), ``malformed`` (the last record cut short; with ``also_answer`` the genuine
  reply follows it).

It counts queries per (lower-case name, type, transport) in ``counts``, counts ``. NS``
health probes separately in ``probes``, and keeps the last queries (``seen``) with their
ID, source address, EDNS and DO bit.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from types import TracebackType

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from tests.support.netutil import free_port

__all__ = ["MODES", "SPOOFED", "DnsUpstream", "Seen"]

MODES = ("ok", "servfail", "refused", "drop", "truncate", "wrong_id", "wrong_question",
         "from_other_port", "looping", "lower_case", "ext_rcode", "after_opt", "trailing",
         "malformed")
RESHAPED = frozenset(MODES[-5:])
SPOOFED = "192.0.2.66"  # the address every forged reply carries
TCP_IDLE = 5.0


@dataclass(frozen=True)
class Seen:
    """One query as the upstream received it."""

    name: str  # as sent (case kept), with a trailing dot
    rdtype: str
    transport: str  # "udp" or "tcp"
    id: int
    source: tuple[str, int]
    edns: int  # EDNS version, -1 without EDNS
    payload: int
    do: bool
    rd: bool
    at: float  # time.monotonic()


class DnsUpstream:
    def __init__(self, port: int = 0, host: str = "127.0.0.1", *, mode: str = "ok",
                 delay: float = 0.0) -> None:
        self.host = host
        self.mode = mode
        self.delay = delay
        self.soa_ttl = 60
        self.soa_minimum = 60
        self.also_answer = False
        self.shuffle = True
        self.loop_to: tuple[str, int] | None = None
        self.loop_budget = 20
        self.records: dict[tuple[str, str], tuple[int, list[str]]] = {}
        self.counts: Counter[tuple[str, str, str]] = Counter()
        self.probes = 0
        self.seen: deque[Seen] = deque(maxlen=2000)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._udp, self._tcp, self._other = self._bind(host, port)
        self.port: int = self._udp.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, name=f"upstream-{self.port}",
                                        daemon=True)
        self._started = False

    # -- setup -----------------------------------------------------------------------

    @property
    def address(self) -> str:
        """``HOST:PORT``, as ``--upstream`` takes it."""
        return f"{self.host}:{self.port}"

    def add(self, name: str, rdtype: str, *rdata: str, ttl: int = 300) -> DnsUpstream:
        with self._lock:
            self.records[(_key(name), rdtype.upper())] = (ttl, list(rdata))
        return self

    def remove(self, name: str, rdtype: str | None = None) -> None:
        with self._lock:
            for k in [k for k in self.records if k[0] == _key(name)]:
                if rdtype is None or k[1] == rdtype.upper():
                    del self.records[k]

    # -- what it saw -----------------------------------------------------------------

    def count(self, name: str, rdtype: str | None = "A", transport: str | None = None) -> int:
        """Queries received for ``name`` (any type if None, any transport if None)."""
        with self._lock:
            return sum(n for (qn, qt, tr), n in self.counts.items() if qn == _key(name)
                       and rdtype in (None, qt) and transport in (None, tr))

    @property
    def total(self) -> int:
        """Every query received except ``. NS`` probes."""
        with self._lock:
            return sum(self.counts.values())

    def queries(self, name: str | None = None) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if name is None or _key(s.name) == _key(name)]

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()
            self.seen.clear()
            self.probes = 0

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> DnsUpstream:
        if not self._started:
            self._started = True
            self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._started:
            self._thread.join(5)
        self._close_sockets()

    def __enter__(self) -> DnsUpstream:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"DnsUpstream({self.address}, mode={self.mode!r})"

    @staticmethod
    def _bind(host: str, port: int) -> tuple[socket.socket, socket.socket, socket.socket]:
        """UDP and TCP on one port (port 0: a free one, retried if TCP's half is taken)."""
        for attempt in range(50):
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                udp.bind((host, port or free_port(host)))
                tcp.bind((host, udp.getsockname()[1]))
                tcp.listen(64)
                other.bind((host, 0))
                return udp, tcp, other
            except OSError:
                for s in (udp, tcp, other):
                    s.close()
                if port or attempt == 49:
                    raise
        raise AssertionError("unreachable")

    def _close_sockets(self) -> None:
        for s in (self._udp, self._tcp, self._other):
            with contextlib.suppress(OSError):
                s.close()

    # -- serving ---------------------------------------------------------------------

    def _serve(self) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self._udp, selectors.EVENT_READ, "udp")
            sel.register(self._tcp, selectors.EVENT_READ, "tcp")
            while not self._stop.is_set():
                for key, _ in sel.select(0.05):
                    try:
                        if key.data == "udp":
                            data, peer = self._udp.recvfrom(65535)
                            self._spawn(self._udp_query, data, peer)
                        else:
                            conn, peer = self._tcp.accept()
                            self._spawn(self._tcp_conn, conn, peer)
                    except OSError:
                        continue

    @staticmethod
    def _spawn(target: object, *args: object) -> None:
        threading.Thread(target=target, args=args, daemon=True).start()  # type: ignore[arg-type]

    def _udp_query(self, data: bytes, peer: tuple[str, int]) -> None:
        for reply, sock in self._handle(data, peer, "udp"):
            with contextlib.suppress(OSError):
                (sock or self._udp).sendto(reply, peer)

    def _tcp_conn(self, conn: socket.socket, peer: tuple[str, int]) -> None:
        conn.settimeout(TCP_IDLE)
        with conn:
            while not self._stop.is_set():
                try:
                    head = _recv_exactly(conn, 2)
                    data = _recv_exactly(conn, struct.unpack("!H", head)[0])
                except (OSError, EOFError):
                    return
                for reply, _ in self._handle(data, peer, "tcp"):
                    try:
                        conn.sendall(struct.pack("!H", len(reply)) + reply)
                    except OSError:
                        return

    def _handle(self, data: bytes, peer: tuple[str, int],
                transport: str) -> list[tuple[bytes, socket.socket | None]]:
        """The datagrams to send back (and the socket to send each from, None: the usual)."""
        try:
            query = dns.message.from_wire(data)
        except dns.exception.DNSException:
            return []
        if not query.question:
            return []
        self._note(query, peer, transport)
        mode, delay = self.mode, self.delay
        if delay and self._stop.wait(delay):
            return []
        if mode == "drop":
            return []
        if mode == "looping":
            return self._loop(data)
        if mode in ("servfail", "refused"):
            resp = dns.message.make_response(query, recursion_available=True)
            resp.set_rcode(dns.rcode.SERVFAIL if mode == "servfail" else dns.rcode.REFUSED)
            return [(resp.to_wire(), None)]
        genuine = self._respond(query)
        limit = max(512, query.payload) if query.edns >= 0 else 512
        if mode == "truncate" and transport == "udp":
            resp = dns.message.make_response(query, recursion_available=True)
            resp.flags |= dns.flags.TC
            return [(resp.to_wire(), None)]
        if mode in ("wrong_id", "wrong_question", "from_other_port"):
            if mode == "from_other_port" and transport == "tcp":
                return [(genuine.to_wire(), None)]
            forged = self._forge(query, mode)
            out: list[tuple[bytes, socket.socket | None]] = [
                (forged.to_wire(), self._other if mode == "from_other_port" else None)]
            if self.also_answer:
                out.append((genuine.to_wire(), None))
            return out
        if mode in RESHAPED and transport == "udp":
            return [(wire, None) for wire in _reshape(genuine, mode, self.also_answer)]
        shuffle = self.shuffle
        if transport == "udp":
            return [(genuine.to_wire(max_size=limit, prefer_truncation=True,
                                     want_shuffle=shuffle), None)]
        return [(genuine.to_wire(want_shuffle=shuffle), None)]

    def _note(self, query: dns.message.Message, peer: tuple[str, int], transport: str) -> None:
        q = query.question[0]
        name = q.name.to_text()
        rdtype = dns.rdatatype.to_text(q.rdtype)
        seen = Seen(name, rdtype, transport, query.id, (peer[0], peer[1]), query.edns,
                    query.payload, bool(query.ednsflags & dns.flags.DO),
                    bool(query.flags & dns.flags.RD), time.monotonic())
        with self._lock:
            self.seen.append(seen)
            if name == "." and rdtype == "NS":
                self.probes += 1
            else:
                self.counts[(_key(name), rdtype, transport)] += 1

    def _respond(self, query: dns.message.Message) -> dns.message.Message:
        resp = dns.message.make_response(query, recursion_available=True)
        q = query.question[0]
        name, rdtype = _key(q.name.to_text()), dns.rdatatype.to_text(q.rdtype)
        if name == "." and rdtype == "NS":
            resp.answer.append(dns.rrset.from_text(q.name, 518400, "IN", "NS", "a.root.test."))
            return resp
        with self._lock:
            records = dict(self.records)
        owner = q.name
        if rdtype != "CNAME" and (name, "CNAME") in records:
            ttl, rdata = records[(name, "CNAME")]
            resp.answer.append(dns.rrset.from_text_list(owner, ttl, "IN", "CNAME", rdata))
            owner = dns.name.from_text(rdata[0])
            name = _key(rdata[0])
        hit = records.get((name, rdtype))
        if hit is not None:
            ttl, rdata = hit
            resp.answer.append(dns.rrset.from_text_list(owner, ttl, "IN", rdtype, rdata))
        elif not resp.answer:
            if all(k[0] != name for k in records):
                resp.set_rcode(dns.rcode.NXDOMAIN)
            soa = ("ns.upstream.test. hostmaster.upstream.test. 1 7200 1800 86400 "
                   f"{self.soa_minimum}")
            resp.authority.append(dns.rrset.from_text(".", self.soa_ttl, "IN", "SOA", soa))
        return resp

    def _forge(self, query: dns.message.Message, mode: str) -> dns.message.Message:
        q = query.question[0]
        asked = query
        if mode == "wrong_question":
            other = dns.name.Name((b"spoofed", *q.name.labels))
            asked = dns.message.make_query(other, q.rdtype, id=query.id)
        forged = dns.message.make_response(asked, recursion_available=True)
        forged.answer.append(dns.rrset.from_text(asked.question[0].name, 300, "IN", "A",
                                                 SPOOFED))
        if mode == "wrong_id":
            forged.id = (query.id + 1) & 0xFFFF
        return forged

    def _loop(self, data: bytes) -> list[tuple[bytes, socket.socket | None]]:
        with self._lock:
            if self.loop_to is None or self.loop_budget <= 0:
                return []
            self.loop_budget -= 1
            target = self.loop_to
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(2.0)
            try:
                s.sendto(data, target)
                reply, _ = s.recvfrom(65535)
            except OSError:
                return []
        return [(reply, None)]


def _reshape(resp: dns.message.Message, mode: str, also_answer: bool) -> list[bytes]:
    """The datagrams of one of the ``RESHAPED`` modes."""
    if mode == "ext_rcode":
        resp.set_rcode(dns.rcode.BADVERS)
    wire = resp.to_wire(want_shuffle=False)
    question_end = 12 + len(resp.question[0].name.to_wire()) + 4
    if mode == "lower_case":
        return [wire[:12] + wire[12:question_end].lower() + wire[question_end:]]
    if mode == "after_opt":  # ARCOUNT + 1, and an A record pointing at the question
        arcount = struct.unpack_from("!H", wire, 10)[0] + 1
        extra = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + bytes((192, 0, 2, 9))
        return [wire[:10] + struct.pack("!H", arcount) + wire[12:] + extra]
    if mode == "trailing":
        return [wire + b"\x00\x00\x00"]
    if mode == "malformed":
        return [wire[:-1], wire] if also_answer else [wire[:-1]]
    return [wire]


def _key(name: str) -> str:
    name = name.lower()
    return name if name.endswith(".") else name + "."


def _recv_exactly(conn: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf
