"""The forwarder: one question in, one ``Outcome`` out, from the cache or upstream.

``Forwarder.fetch`` never leaves a caller without an answer: ``done`` is always called,
maybe before ``fetch`` returns. It applies ``policy``'s decisions with ``sockets``' I/O:

* a fresh cache entry answers at once (and may start a prefetch); a stale one is kept in
  case every upstream fails;
* beyond ``max_concurrent`` queries in flight, new ones are REFUSED;
* a UDP reply counts only if its source (the kernel checks it), ID and question match;
  a query with no reply within ``read_timeout`` fails over to the next upstream;
* an unhealthy upstream is probed with ``. NS`` every ``health_check`` seconds until it
  answers; a loop probe sent at start-up that comes back to us marks its upstream looped
  (both in ``health``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from bisect import bisect_left
from collections.abc import Callable
from typing import Any

from skydns.record import Labels

from ..stats import ForwardStats
from ..tally import DURATION_BUCKETS
from ..wire.constants import REFUSED, TC, rcode_name
from ..wire.response import Response, parse_response
from . import policy
from .cache import ForwardCache, Key
from .health import Health
from .policy import Attempt, Done, ForwardSettings, Outcome, Pool, Upstream, Verdict
from .raw import QueryBodies, RawRelay, plain_reply
from .sockets import Outbox, Readers, UdpSocket, UdpSockets, random_id, tcp_exchange

log = logging.getLogger(__name__)

SWEEP = 0.05  # how often timeouts are checked while queries are in flight


class Forwarder:
    def __init__(self, settings: ForwardSettings, cache: ForwardCache | None,
                 stats: ForwardStats | None = None) -> None:
        self.settings = settings
        self.cache = cache
        self.stats = stats if stats is not None else ForwardStats()
        self.pools = policy.pools(settings)
        # The pool of every name when there are no stub domains: ``pool_for`` without a call.
        only = self.pools[0] if len(self.pools) == 1 else None
        self.only_pool = only if only is not None and only.upstreams else None
        self.health = Health(settings, self.stats, self.pools)
        self.probes = self.health.probes  # loop probes out (the same dict)
        self.detect_loops = self.health.detect_loops
        self.probe_seen = self.health.probe_seen
        self._inflight: dict[Attempt, None] = {}  # UDP queries, oldest deadline first
        self._bodies = QueryBodies(settings.udp_size)
        self._socks = UdpSockets(settings.sockets, self._drain, self._opened, self._inflight)
        self._tcp = 0
        self._sweeping = False
        self._loop: asyncio.AbstractEventLoop | None = None  # set by ``read_with``
        self._outbox: Outbox | None = None  # likewise: ``send_now``'s queries
        self._loop_thread = 0
        self._last_error_log = 0.0
        self._errors_unlogged = 0

    # -- public ----------------------------------------------------------------------

    def pool_for(self, labels: Labels) -> Pool | None:
        return policy.pool_for(self.pools, labels)

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

    def read_with(self, readers: Readers, loop: asyncio.AbstractEventLoop) -> None:
        """Have ``readers`` (the UDP server's reading thread, holding ``loop``'s gate) read
        the upstream sockets; then ``send_now`` may be called from that thread, and replies
        are handled there. Called on the loop's thread, before any query is forwarded."""
        self._socks.readers = readers
        self._loop, self._loop_thread = loop, threading.get_ident()

    def in_flight(self) -> int:
        return len(self._inflight) + self._tcp

    def close(self) -> None:
        self._socks.close()
        if self._outbox is not None:
            self._socks.readers.unwatch(self._outbox.bell)
            self._outbox.close()
            self._outbox = None

    # -- trying upstreams ------------------------------------------------------------

    def _forward(self, key: Key, qname: bytes, flags: int, tcp: bool, stale: Outcome | None,
                 done: Done, pool: Pool | None = None) -> None:
        if pool is None:
            pool = self.pool_for(key.labels)
        if pool is None:
            done(Outcome(None, REFUSED))
            return
        if len(self._inflight) + self._tcp >= self.settings.max_concurrent:
            self.stats.counters["max_concurrent_rejects"] += 1
            done(Outcome(None, REFUSED))
            return
        order = pool.order(self.settings.max_fails)
        if not order or not order[0].healthy(self.settings.max_fails):  # healthy come first
            self.stats.counters["healthcheck_broken"] += 1  # all down: try them anyway
        body = self._bodies.body(key, qname, flags)
        self._next(Attempt(key, qname, body, tcp, order, stale, done))

    def _next(self, q: Attempt) -> None:
        if not q.tries:
            self._log_failure(q)
            if q.stale is not None and self.cache is not None:
                self.cache.served_stale()
            q.done(policy.give_up(q.stale, q.network))
            return
        up = q.upstream = q.tries.pop(0)
        q.started = time.monotonic()
        self.stats.requests_to[up.name] += 1
        if q.tcp:
            self.stats.conn_misses[(up.name, "tcp")] += 1  # one connection per query
            self._tcp += 1
            self._on_loop(self._start_tcp, q, up)
            return
        try:
            s = self._socks.pick(up)
        except OSError as exc:
            self._failed(q, "network", f"socket: {exc}")
            return
        try:
            s.sock.send(self._await(q, s))
        except OSError as exc:
            self._unsent(q, exc)
            return
        if self._loop is None or threading.get_ident() == self._loop_thread:
            self._socks.readers.sent()
        self._arm_sweep()

    def _on_loop(self, fn: Callable[..., object], *args: Any) -> None:
        """``fn(*args)`` on the loop's thread: now if this is it, else soon."""
        loop = self._loop
        if loop is None or threading.get_ident() == self._loop_thread:
            fn(*args)
        else:
            loop.call_soon_threadsafe(fn, *args)

    def _start_tcp(self, q: Attempt, up: Upstream) -> None:
        asyncio.get_running_loop().create_task(self._tcp_query(q, up))

    def _arm_sweep(self) -> None:
        """Check timeouts every ``SWEEP`` seconds while UDP queries are in flight."""
        if not self._sweeping:
            self._sweeping = True
            self._on_loop(self._sweep_later)

    def _sweep_later(self) -> None:
        asyncio.get_running_loop().call_later(SWEEP, self._sweep)

    def _await(self, q: Attempt, s: UdpSocket) -> bytes:
        """Give ``q`` a fresh ID on ``s`` and wait for its reply there (or its deadline);
        the datagram to send."""
        qid = random_id()
        while qid in s.pending:
            qid = (qid + 1) & 0xFFFF
        q.qid, q.sock = qid, s
        s.pending[qid] = q
        q.deadline = q.started + self.settings.read_timeout
        self._inflight[q] = None
        return qid.to_bytes(2, "big") + q.body

    def _forget(self, q: Attempt) -> None:
        """Wait no more for ``q``'s reply."""
        self._inflight.pop(q, None)
        if isinstance(q.sock, UdpSocket):
            q.sock.pending.pop(q.qid, None)

    def _unsent(self, q: Attempt, exc: OSError) -> None:
        """``q`` could not be sent (at once or held in ``Outbox``): fail over."""
        self._forget(q)
        self._failed(q, "network", f"send: {exc}")

    def send_now(self, key: Key, qname: bytes, flags: int, pool: Pool, done: Done,
                 raw: RawRelay | None = None) -> bool:
        """A UDP question's first try, sent from the UDP reading thread (which holds the
        loop's gate) as ``fetch`` with no cache entry would send it; its reply, failover and
        timeout are handled as usual. False, with nothing sent, when the reading thread
        does not read the upstream sockets (``read_with``), at max_concurrent (``fetch``
        refuses), or on a socket error (``fetch`` counts it and fails over). With no cache
        to keep the reply in, ``raw`` is offered a plain reply's bytes (``forward.raw``).
        Sent at once when no other reply is awaited, else held in ``Outbox``."""
        settings = self.settings
        if self._loop is None or len(self._inflight) + self._tcp >= settings.max_concurrent:
            return False
        tries = pool.order(settings.max_fails)
        if not tries:
            return False
        up = tries.pop(0)  # the rest are the failover's
        if not up.healthy(settings.max_fails):  # healthy come first
            self.stats.counters["healthcheck_broken"] += 1  # all down: try them anyway
        q = Attempt(key, qname, self._bodies.body(key, qname, flags), False, tries, None, done)
        q.upstream, q.started = up, time.monotonic()
        if self.cache is None:
            q.raw = raw
        try:
            s = self._socks.pick(up)
        except OSError:
            return False
        datagram = self._await(q, s)
        if len(self._inflight) > 1:  # others are awaited: go out with this batch's
            (self._outbox or self._open_outbox()).hold(s.sock, datagram, q)
        else:  # no batch to join: the bell would only add an eventfd and an epoll pass
            try:
                s.sock.send(datagram)
            except OSError:
                self._forget(q)
                return False
        self.stats.requests_to[up.name] += 1
        if not self._sweeping:
            self._arm_sweep()
        return True

    def _open_outbox(self) -> Outbox:
        """Made by the reading thread itself, so that it is the one to watch the bell."""
        outbox = self._outbox = Outbox(self._unsent)
        self._socks.readers.watch(outbox.bell, outbox.send, self._inflight)
        return outbox

    def _opened(self, up: Upstream) -> None:
        self.stats.conn_misses[(up.name, "udp")] += 1

    def _drain(self, s: UdpSocket) -> None:
        recv, pending = s.sock.recv, s.pending
        for _ in range(64):
            try:
                data = recv(65535)  # connected: only from this socket's upstream
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # e.g. ICMP port unreachable; the timeout handles that upstream
            q = pending.get(data[0] << 8 | data[1]) if len(data) >= 12 else None
            if q is None or not self._take(q, data, pending):
                self.stats.counters["unexpected_replies"] += 1
                continue
            if not pending:
                return  # nothing more is due here; stray datagrams wake us again

    def _take(self, q: Attempt, data: bytes, pending: dict[int, Attempt]) -> bool:
        """``q``'s reply, relayed raw if it is plain and ``q.raw`` takes it, else parsed;
        False when it does not answer ``q`` (forged or malformed)."""
        raw, up = q.raw, q.upstream
        if raw is not None and up is not None:
            cut = plain_reply(data, q.body[10:-11])  # the question we sent
            if cut >= 0 and raw.fits(data, cut):
                del pending[q.qid]
                self._inflight.pop(q, None)
                self._record(up, data[3] & 0xF, q.started)  # as ``_answered`` would
                up.fails = 0
                raw.relay(data, cut)
                return True
        resp = _parse(data)
        if resp is None or not q.same_question(resp):
            return False
        del pending[q.qid]
        self._inflight.pop(q, None)
        self._answered(q, resp)
        return True

    def _sweep(self) -> None:
        now = time.monotonic()
        expired = []
        for q in self._inflight:
            if q.deadline > now:
                break
            expired.append(q)
        for q in expired:
            self._forget(q)
            self._failed(q, "timeout", "no reply in time")
        retired = self._socks.sweep_retired()
        self._sweeping = bool(self._inflight) or retired
        if self._sweeping:
            asyncio.get_running_loop().call_later(SWEEP, self._sweep)

    def _answered(self, q: Attempt, resp: Response) -> None:
        up = q.upstream
        assert up is not None
        rcode = resp.rcode
        self._record(up, rcode, q.started)
        verdict = policy.judge(rcode, bool(resp.flags & TC), q.tcp) \
            if rcode or resp.flags & TC else Verdict.ANSWER  # the usual case, without a call
        if verdict is Verdict.NEXT:
            self._next(q)  # an upstream that answers is healthy, just not helpful
            return
        if verdict is Verdict.RETRY_TCP:
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

    def _failed(self, q: Attempt, reason: str, why: str) -> None:
        """An upstream did not answer usefully: ``reason`` is timeout, network or malformed."""
        up = q.upstream
        assert up is not None
        q.network = q.network or reason == "network"
        self.stats.counters["upstream_failures"] += 1
        self.stats.failures[(up.name, reason)] += 1
        log.debug("upstream %s failed for %s: %s", up.name, q.key.labels, why)
        if policy.failed(up, self.settings.max_fails):
            self._on_loop(self.health.start_check, up)
        self._next(q)

    def _log_failure(self, q: Attempt) -> None:
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
        buckets = up.durations.get(rcode)
        if buckets is None:
            buckets = up.durations[rcode] = self.stats.buckets(up.name, rcode_name(rcode))
        seconds = time.monotonic() - started
        buckets[bisect_left(DURATION_BUCKETS, seconds)] += 1  # ``duration_bucket``
        buckets[-1] += seconds

    async def _tcp_query(self, q: Attempt, up: Upstream) -> None:
        qid = random_id()
        query = qid.to_bytes(2, "big") + q.body
        try:
            data = await asyncio.wait_for(tcp_exchange(up, query), self.settings.read_timeout)
            resp = parse_response(data)
            if not q.same_question(resp) or resp.id != qid:
                raise ValueError("reply does not match the question")
        except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as exc:
            self._tcp -= 1
            reason = ("timeout" if isinstance(exc, TimeoutError) else
                      "malformed" if isinstance(exc, ValueError) else "network")
            self._failed(q, reason, f"tcp: {exc!r}")
            return
        self._tcp -= 1
        self._answered(q, resp)

def _parse(data: bytes) -> Response | None:
    try:
        return parse_response(data)
    except ValueError:
        return None


def _ignore(_outcome: Outcome) -> None:
    """Prefetches refresh the cache; nobody waits for them."""
