"""Forwarding names outside our zones to upstream servers (CoreDNS's ``forward``).

``Forwarder.fetch`` gets the reply for one question, from the cache or upstream, and calls
back with an ``Outcome``; it never leaves a client without an answer. For each question:

* the pool is chosen by the longest matching stub domain, else the default upstreams;
* upstreams are tried in policy order (random, round_robin, sequential), healthy ones first;
  a timeout, SERVFAIL or REFUSED moves on to the next; when all have failed the outcome is
  a stale cache entry if one is allowed, else SERVFAIL;
* a truncated UDP reply is asked again over TCP; TCP clients are forwarded over TCP;
* each UDP query leaves from a randomly chosen socket of the upstream's pool (each on its
  own random port, connected to that upstream, replaced after ``SOCKET_USES`` queries) with
  a random ID, and a reply counts only if its source (the kernel checks it), ID and
  question all match;
* an upstream that failed ``max_fails`` times is skipped and probed with ``. NS`` every
  ``health_check`` seconds until it answers;
* beyond ``max_concurrent`` queries in flight, new ones are REFUSED.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from skydns.netaddr import split_hostport
from skydns.record import Labels

from . import rr as T
from . import wire
from .cache import Entry, Key, ResponseCache
from .tally import DURATION_BUCKETS, duration_bucket, rcode_name

log = logging.getLogger(__name__)

SERVFAIL, REFUSED = 2, 5
SOCKET_USES = 4096
SWEEP = 0.05
POLICIES = ("random", "round_robin", "sequential")


class Outcome(NamedTuple):
    response: wire.Response | None  # None: answer ``rcode`` ourselves
    rcode: int = 0
    age: int = 0  # seconds since the reply was cached
    stale: bool = False
    stored: float = 0.0  # monotonic time it was cached, and when it expires (0: not cached)
    expires: float = 0.0
    cached: bool = False  # served from the cache rather than just fetched
    entry: Entry | None = None  # the cache entry, so later hits can count toward prefetch


Done = Callable[[Outcome], None]


@dataclass(frozen=True, slots=True)
class ForwardSettings:
    upstreams: tuple[str, ...] = ()
    stubs: tuple[tuple[str, tuple[str, ...]], ...] = ()
    policy: str = "random"
    read_timeout: float = 2.0
    max_concurrent: int = 1000
    max_fails: int = 2
    health_check: float = 0.5
    udp_size: int = 1232
    sockets: int = 8


class Upstream:
    def __init__(self, address: str) -> None:
        self.host, self.port = split_hostport(address, 53)
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.name = f"{host}:{self.port}"
        self.family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self.addr = (self.host, self.port)
        self.fails = 0
        self.looped = False
        self.checking = False
        self.socks: list[_Sock] = []  # its UDP sockets, opened as they are needed
        self.buckets: dict[int, list[float]] = {}  # rcode -> its list in Forwarder.durations


class Pool:
    def __init__(self, domain: Labels, upstreams: list[Upstream], policy: str) -> None:
        self.domain = domain
        self.upstreams = upstreams
        self.policy = policy
        self._turn = 0

    def order(self, max_fails: int) -> list[Upstream]:
        """The upstreams to try, in turn: healthy ones in policy order, then failing ones."""
        usable = [u for u in self.upstreams if not u.looped]
        if len(usable) < 2:
            return usable  # nothing to order
        healthy = [u for u in usable if u.fails < max_fails]
        if self.policy == "random":
            random.shuffle(healthy)
        elif self.policy == "round_robin":
            self._turn += 1
            if healthy:
                k = self._turn % len(healthy)
                healthy = healthy[k:] + healthy[:k]
        return healthy + [u for u in usable if u.fails >= max_fails]


class _Sock:
    """A UDP socket on a random port, connected to one upstream.

    Connected, so the kernel delivers only that upstream's datagrams and send/recv skip
    a route lookup per packet.
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
        self.pending: dict[int, _Query] = {}
        self.uses = 0


class _Query:
    """One question on its way through the upstreams of a pool."""

    __slots__ = ("body", "deadline", "done", "key", "qid", "qname", "sock", "stale", "started",
                 "tcp", "tries", "upstream")

    def __init__(self, key: Key, qname: bytes, body: bytes, tcp: bool, tries: list[Upstream],
                 stale: Outcome | None, done: Done) -> None:
        self.key, self.qname, self.body, self.tcp = key, qname, body, tcp  # body: after the ID
        self.tries, self.stale, self.done = tries, stale, done
        self.upstream: Upstream | None = None
        self.sock: _Sock | None = None
        self.qid = 0
        self.deadline = 0.0
        self.started = 0.0


class Forwarder:
    def __init__(self, settings: ForwardSettings, cache: ResponseCache | None) -> None:
        self.settings = settings
        self.cache = cache
        self.pools = [Pool((), [Upstream(a) for a in settings.upstreams], settings.policy)]
        for domain, addresses in settings.stubs:
            labels = tuple(domain.rstrip(".").lower().split(".")) if domain.strip(".") else ()
            self.pools.append(Pool(labels, [Upstream(a) for a in addresses], settings.policy))
        self.pools.sort(key=lambda p: len(p.domain), reverse=True)
        self.stats: Counter[str] = Counter()
        self.requests_to: Counter[str] = Counter()  # to -> queries sent
        self.healthcheck_failures: Counter[str] = Counter()  # to -> failed probes
        # (to, proto) -> queries that needed a new socket; every other UDP query reused one
        self.conn_misses: Counter[tuple[str, str]] = Counter()
        self._last_error_log = 0.0
        self._errors_unlogged = 0
        # (to, rcode) -> replies per duration bucket (last: above all), then the sum of seconds
        self.durations: dict[tuple[str, str], list[float]] = {}
        self.probes: dict[Labels, Upstream] = {}
        self._retired: list[_Sock] = []
        self._inflight: dict[_Query, None] = {}  # UDP queries, oldest deadline first
        self._tcp = 0
        self._sweeping = False
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- public ----------------------------------------------------------------------

    def pool_for(self, labels: Labels) -> Pool | None:
        for pool in self.pools:
            n = len(pool.domain)
            if pool.upstreams and (not n or labels[len(labels) - n :] == pool.domain):
                return pool
        return None

    def fetch(self, labels: Labels, qname: bytes, qtype: int, qclass: int, *, flags: int,
              do: bool, tcp: bool, done: Done, pool: Pool | None = None) -> None:
        """Resolve one question; ``done`` is always called, maybe before this returns.

        ``pool``: the one ``pool_for(labels)`` gives, if the caller already has it."""
        key = Key(labels, qtype, qclass, do)
        stale: Outcome | None = None
        if self.cache is not None:
            now = time.monotonic()
            entry, fresh = self.cache.get(key, now)
            if entry is not None and fresh:
                if self.cache.wants_prefetch(entry, now):
                    self._forward(key, qname, flags, False, None, _ignore)
                done(Outcome(entry.response, age=entry.age(now), stored=entry.stored,
                             expires=entry.expires, cached=True, entry=entry))
                return
            if entry is not None:
                stale = Outcome(entry.response, stale=True, cached=True)
        self._forward(key, qname, flags, tcp, stale, done, pool)

    def _forward(self, key: Key, qname: bytes, flags: int, tcp: bool, stale: Outcome | None,
                 done: Done, pool: Pool | None = None) -> None:
        if pool is None:
            pool = self.pool_for(key.labels)
        if pool is None:
            done(Outcome(None, REFUSED))
            return
        if len(self._inflight) + self._tcp >= self.settings.max_concurrent:
            self.stats["max_concurrent_rejects"] += 1
            done(Outcome(None, REFUSED))
            return
        query = wire.build_query(0, qname, key.qtype, key.qclass, flags=flags, do=key.do,
                                 udp_size=self.settings.udp_size)
        order = pool.order(self.settings.max_fails)
        if not order or order[0].fails >= self.settings.max_fails:  # healthy ones come first
            self.stats["healthcheck_broken"] += 1  # every upstream is down: try them anyway
        self._next(_Query(key, qname, query[2:], tcp, order, stale, done))

    def in_flight(self) -> int:
        return len(self._inflight) + self._tcp

    def close(self) -> None:
        for pool in self.pools:
            for up in pool.upstreams:
                for s in up.socks:
                    self._close_sock(s)
                up.socks.clear()
        for s in self._retired:
            self._close_sock(s)
        self._retired.clear()

    # -- trying upstreams ------------------------------------------------------------

    def _next(self, q: _Query) -> None:
        if not q.tries:
            self._give_up(q)
            return
        up = q.upstream = q.tries.pop(0)
        q.started = time.monotonic()
        self.requests_to[up.name] += 1
        if q.tcp:
            self.conn_misses[(up.name, "tcp")] += 1  # one connection per query
            self._spawn_tcp(q, up)
            return
        try:
            s = self._pick_sock(up)
        except OSError as exc:
            self._failed(q, f"socket: {exc}")
            return
        qid = _random_id()
        while qid in s.pending:
            qid = (qid + 1) & 0xFFFF
        q.qid, q.sock = qid, s
        try:
            s.sock.send(qid.to_bytes(2, "big") + q.body)
        except OSError as exc:
            self._failed(q, f"send: {exc}")
            return
        s.pending[qid] = q
        q.deadline = q.started + self.settings.read_timeout
        self._inflight[q] = None
        if not self._sweeping:
            self._sweeping = True
            asyncio.get_running_loop().call_later(SWEEP, self._sweep)

    def _pick_sock(self, up: Upstream) -> _Sock:
        socks = up.socks
        if len(socks) < self.settings.sockets:
            s = self._open_sock(up)
            socks.append(s)
            return s
        i = _random_id() % len(socks)
        s = socks[i]
        s.uses += 1
        if s.uses >= SOCKET_USES:  # a fresh random port now and then
            self._retired.append(s)
            socks[i] = s = self._open_sock(up)
        return s

    def _open_sock(self, up: Upstream) -> _Sock:
        self.conn_misses[(up.name, "udp")] += 1
        s = _Sock(up)
        asyncio.get_running_loop().add_reader(s.sock.fileno(), self._drain, s)
        return s

    def _close_sock(self, s: _Sock) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is already gone at exit
            asyncio.get_running_loop().remove_reader(s.sock.fileno())
        s.sock.close()

    def _drain(self, s: _Sock) -> None:
        recv, pending = s.sock.recv, s.pending
        for _ in range(64):
            try:
                data = recv(65535)  # connected: only from this socket's upstream
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # e.g. ICMP port unreachable; the timeout handles that upstream
            q = pending.get(int.from_bytes(data[:2], "big")) if len(data) >= 2 else None
            if q is None:
                self.stats["unexpected_replies"] += 1
                continue
            try:
                resp = wire.parse_response(data)
            except ValueError:
                self.stats["unexpected_replies"] += 1
                continue
            if not _same_question(resp, q):
                self.stats["unexpected_replies"] += 1
                continue
            del pending[q.qid]
            self._inflight.pop(q, None)
            self._answered(q, resp)
            if not pending:
                return  # nothing more is due here; stray datagrams wake us again

    def _sweep(self) -> None:
        now = time.monotonic()
        expired = []
        for q in self._inflight:
            if q.deadline > now:
                break
            expired.append(q)
        for q in expired:
            del self._inflight[q]
            if q.sock is not None:
                q.sock.pending.pop(q.qid, None)
            self._failed(q, "timeout")
        for s in [s for s in self._retired if not s.pending]:
            self._retired.remove(s)
            self._close_sock(s)
        self._sweeping = bool(self._inflight or self._retired)
        if self._sweeping:
            asyncio.get_running_loop().call_later(SWEEP, self._sweep)

    def _answered(self, q: _Query, resp: wire.Response) -> None:
        up = q.upstream
        assert up is not None
        rcode = resp.rcode
        self._record(up, rcode, q.started)
        if rcode in (SERVFAIL, REFUSED):
            self._next(q)  # an upstream that answers is healthy, just not helpful
            return
        if resp.flags & wire.TC and not q.tcp:
            q.tries.insert(0, up)
            q.tcp = True
            self._next(q)
            return
        up.fails = 0
        entry = self.cache.put(q.key, resp, time.monotonic()) if self.cache is not None else None
        if entry is None:
            q.done(Outcome(resp))
        else:
            q.done(Outcome(resp, stored=entry.stored, expires=entry.expires, entry=entry))

    def _failed(self, q: _Query, why: str) -> None:
        up = q.upstream
        assert up is not None
        up.fails += 1
        self.stats["upstream_failures"] += 1
        log.debug("upstream %s failed for %s: %s", up.name, q.key.labels, why)
        if up.fails >= self.settings.max_fails and not up.checking:
            up.checking = True
            asyncio.get_running_loop().create_task(self._health_loop(up))
        self._next(q)

    def _give_up(self, q: _Query) -> None:
        self._log_failure(q)
        if q.stale is not None:
            if self.cache is not None:
                self.cache.served_stale()
            q.done(q.stale)
            return
        q.done(Outcome(None, SERVFAIL))

    def _log_failure(self, q: _Query) -> None:
        """Errors are always logged, but at most one line a second during an outage."""
        now = time.monotonic()
        if now - self._last_error_log < 1.0:
            self._errors_unlogged += 1
            return
        more = f" (and {self._errors_unlogged} more since the last message)" \
            if self._errors_unlogged else ""
        name = ".".join(q.key.labels) + "."
        log.error("every upstream failed for %s %s%s", name, q.key.qtype, more)
        self._last_error_log, self._errors_unlogged = now, 0

    def _record(self, up: Upstream, rcode: int, started: float) -> None:
        buckets = up.buckets.get(rcode)
        if buckets is None:
            buckets = up.buckets[rcode] = self.durations.setdefault(
                (up.name, rcode_name(rcode)), [0] * (len(DURATION_BUCKETS) + 2))
        seconds = time.monotonic() - started
        buckets[duration_bucket(seconds)] += 1
        buckets[-1] += seconds

    # -- TCP -------------------------------------------------------------------------

    def _spawn_tcp(self, q: _Query, up: Upstream) -> None:
        self._tcp += 1
        asyncio.get_running_loop().create_task(self._tcp_query(q, up))

    async def _tcp_query(self, q: _Query, up: Upstream) -> None:
        qid = _random_id()
        query = qid.to_bytes(2, "big") + q.body
        try:
            data = await asyncio.wait_for(self._tcp_exchange(up, query), self.settings.read_timeout)
            resp = wire.parse_response(data)
            if not _same_question(resp, q) or resp.id != qid:
                raise ValueError("reply does not match the question")
        except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as exc:
            self._tcp -= 1
            self._failed(q, f"tcp: {exc!r}")
            return
        self._tcp -= 1
        self._answered(q, resp)

    async def _tcp_exchange(self, up: Upstream, query: bytes) -> bytes:
        reader, writer = await asyncio.open_connection(up.host, up.port)
        try:
            writer.write(len(query).to_bytes(2, "big") + query)
            await writer.drain()
            size = int.from_bytes(await reader.readexactly(2), "big")
            return await reader.readexactly(size)
        finally:
            writer.close()

    # -- health and loops ------------------------------------------------------------

    async def _health_loop(self, up: Upstream) -> None:
        probe = wire.build_query(0, b"\x00", T.NS, T.CLASS_IN, flags=0, do=False, udp_size=512)
        log.warning("upstream %s is failing; health-checking it", up.name)
        try:
            while up.fails >= self.settings.max_fails:
                await asyncio.sleep(self.settings.health_check)
                if await self._probe(up, probe):
                    up.fails = 0
                    log.info("upstream %s is healthy again", up.name)
                else:
                    self.stats["healthcheck_failures"] += 1
                    self.healthcheck_failures[up.name] += 1
        finally:
            up.checking = False

    async def _probe(self, up: Upstream, query: bytes) -> bool:
        """One query to one upstream: a random ID, and only that upstream's reply counts."""
        loop = asyncio.get_running_loop()
        qid = os.urandom(2)
        with socket.socket(up.family, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            try:
                await loop.sock_connect(sock, up.addr)
                await loop.sock_sendall(sock, qid + query[2:])
                reply = loop.sock_recv(sock, 65535)
                data = await asyncio.wait_for(reply, self.settings.read_timeout)
            except (OSError, TimeoutError):
                return False
        return len(data) >= 12 and data[:2] == qid

    async def detect_loops(self) -> list[str]:
        """Send each upstream a random name; if it comes back to us, that upstream loops."""
        waits = []
        for pool in self.pools:
            for up in pool.upstreams:
                name = (os.urandom(8).hex(), os.urandom(4).hex(), "skyserve-loop-probe")
                self.probes[name] = up
                query = wire.build_query(0, wire.encode_name(name), 13, T.CLASS_IN, flags=wire.RD,
                                         do=False, udp_size=512)
                waits.append(self._probe(up, query))
        if waits:
            await asyncio.gather(*waits)
        looped = sorted({u.name for u in self.probes.values() if u.looped})
        self.probes.clear()
        return looped

    def probe_seen(self, labels: Labels) -> bool:
        """Called for every incoming query during loop detection: is it our own probe?"""
        up = self.probes.get(labels)
        if up is None:
            return False
        if not up.looped:
            up.looped = True
            log.error("forwarding loop: upstream %s sends our queries back to us; "
                      "not forwarding to it", up.name)
        return True


def _same_question(resp: wire.Response, q: _Query) -> bool:
    """The reply is to our question: name (in any case), type and class."""
    return (resp.qtype == q.key.qtype and resp.qclass == q.key.qclass
            and (resp.qname == q.qname or resp.qname.lower() == q.qname.lower()))


_ids: list[int] = []


def _random_id() -> int:
    """A query ID from the OS's CSPRNG, drawn 2048 at a time to spare a syscall per query."""
    if not _ids:
        pool = os.urandom(4096)
        _ids.extend(int.from_bytes(pool[i : i + 2], "big") for i in range(0, 4096, 2))
    return _ids.pop()


def _ignore(_outcome: Outcome) -> None:
    """Prefetches refresh the cache; nobody waits for them."""


def read_resolv_conf(path: str) -> list[str]:
    """The nameserver entries of a resolv.conf file ([] if it cannot be read)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        parts = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            host = parts[1]
            out.append(f"[{host}]:53" if ":" in host else f"{host}:53")
    return out
