"""The chain: builds the stages in order and is what the transports call.

``Pipeline.handle(data, tcp, peer, send)`` takes one raw query and returns the reply bytes,
or None when there is nothing to send now (dropped, or deferred: sent later through
``send``). It keeps the promise every stage relies on: an exception in any stage, now or
in a deferred reply, is counted (``coredns_panics_total``), logged, and answered SERVFAIL.
``load`` and ``apply`` are how the etcd mirror's data reaches the zones stage.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ..forward.forwarder import Forwarder
from ..index import Change, Index
from ..querylog import QueryLog
from ..stats import Stats
from ..wire.constants import SERVFAIL
from ..wire.query import failure_reply
from ..xfr.primary import Primary
from .acl import AccessControl
from .answers import AnswerCache
from .context import Settings, Shared
from .cookies import Cookies
from .direct import Direct
from .forwarding import Forwarding, Refuse
from .keepalive import Keepalive
from .loopcheck import LoopCheck
from .parse import Parse
from .request import Build, Handler, Request, Send
from .rrl import RateLimit
from .sendnow import SendNow
from .transfer import Transfer
from .zones import Zones

log = logging.getLogger(__name__)
_clock = time.perf_counter  # a module global: one lookup less on the hot path


class Pipeline:
    def __init__(self, settings: Settings, *, stats: Stats | None = None,
                 forwarder: Forwarder | None = None, querylog: QueryLog | None = None,
                 primary: Primary | None = None) -> None:
        self.stats = stats if stats is not None else Stats()
        self.stats.forwarding = forwarder is not None
        self.stats.caching = forwarder is not None and forwarder.cache is not None
        self.shared = Shared(settings, self.stats, forwarder)
        self.forwarder = forwarder
        self.querylog = querylog
        self.answers = self.shared.answers
        self._hit = self.answers.hit  # bound once: the hot path
        # Built back to front: each stage is given the one after it.
        forwarding = Forwarding(self.shared) if forwarder is not None else None
        last: Handler = (forwarding or Refuse(self.shared)).handle
        self.zones = Zones(self.shared, last)
        after_parse: Handler = self.zones.handle
        if forwarder is not None:
            after_parse = LoopCheck(self.shared, after_parse).handle
        self.primary = primary
        if primary is not None:
            primary.serve_from(self.zones)
            after_parse = Transfer(self.shared, primary, after_parse).handle
        # Direct answers for the common first-time shapes (stage 1b), before any parse.
        self._direct = Direct(self.shared, self.zones).answer
        # Forwarded at once from the reading thread (stage 1c).
        self._send_now = SendNow(self.shared, self.zones, forwarding, self._deliver,
                                 self._finish).send \
            if forwarder is not None and forwarding is not None else _keep
        if settings.guarded:  # the cache is asked after the guards, as a stage
            self._hit = self._direct = _miss
            self._send_now = _keep
            after_parse = self._guards(settings, after_parse)
        self._first = Parse(self.shared, after_parse).handle

    def _guards(self, settings: Settings, data: Handler) -> Handler:
        """The stages that must see every query, then the answer cache, then ``data``.
        In order: cookies (so a valid one is known), TCP keepalive, rate limiting (which
        also limits ACL refusals), ACLs."""
        shared = self.shared
        handler: Handler = CachedAnswers(self.answers, data).handle
        if settings.acl:
            handler = AccessControl(shared, handler, settings.acl).handle
        if settings.rrl is not None:
            handler = RateLimit(shared, handler, settings.rrl).handle
        if settings.tcp_keepalive:
            handler = Keepalive(handler, settings.tcp_keepalive).handle
        if settings.cookies is not None:
            handler = Cookies(shared, handler, settings.cookies).handle
        return handler

    # -- serving ---------------------------------------------------------------------

    def handle(self, data: bytes, tcp: bool = False, peer: Any = None,
               send: Send | None = None) -> bytes | None:
        """Answer one query: the reply, or None (dropped, or sent later through ``send``)."""
        return self.quick(data, peer, send, _clock(), tcp, self._first)

    def quick(self, data: bytes, peer: Any, send: Send | None, start: float, tcp: bool = False,
              rest: Handler | None = None) -> bytes | None:
        """A UDP query's reply if the answer cache or the direct stage has it; b"" when it
        was forwarded at once (the reply goes later through ``send``); else None (then
        ``handle`` must answer it). What the transport's reading thread asks, with no
        ``rest``; ``handle`` gives it the general path as ``rest``, so that both are one
        Python call deep to the cache hit. The reply is logged; an exception is a
        SERVFAIL. ``start``: when the query was read, what its logged duration counts
        from (the reading thread reads a batch of queries before it answers them)."""
        try:
            reply = self._hit(data, tcp, start) or self._direct(data, tcp, start)
            if reply is None:
                if rest is not None:
                    reply = rest(Request(data, tcp, peer, send, start, self._deliver))
                elif send is not None and self._send_now(data, peer, send, start):
                    return b""
        except Exception:
            reply = self._panic(data)
        if reply is not None and self.querylog is not None:
            self.querylog.log(data, reply, peer, tcp, _clock() - start)
        return reply

    def _deliver(self, req: Request, build: Build) -> None:
        """Send a deferred reply, built now; a failure to build it is a panic too."""
        self._finish(req.data, req.tcp, req.peer, req.send, req.start, build)

    def _finish(self, data: bytes, tcp: bool, peer: Any, send: Send | None, start: float,
                build: Build) -> None:
        """``_deliver`` for a query with no ``Request`` (``sendnow.Relayed``)."""
        try:
            reply: bytes | None = build()
        except Exception:
            reply = self._panic(data)
        if reply is None or send is None:
            return
        if self.querylog is not None:
            self.querylog.log(data, reply, peer, tcp, _clock() - start)
        send(reply, peer)

    def _panic(self, data: bytes) -> bytes | None:
        self.stats.panics += 1
        log.exception("error answering a query; answering SERVFAIL")
        return failure_reply(data, SERVFAIL)

    # -- data ------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self.zones.ready

    @property
    def revision(self) -> int:
        return self.zones.revision

    def load(self, index: Index, revision: int) -> None:
        self.zones.load(index, revision)
        if self.primary is not None:
            self.primary.loaded(revision)

    def apply(self, changes: list[Change], revision: int) -> None:
        self.zones.apply(changes, revision)
        if self.primary is not None:
            self.primary.changed(changes, revision)

    def adopt(self, previous: Pipeline) -> None:
        """A reload: serve the previous pipeline's data (its counters are the same Stats)."""
        if previous.ready:
            self.zones.load(previous.zones.authority.index, previous.revision)


def _miss(data: bytes, tcp: bool, start: float) -> None:
    """The hot path's cache lookup and direct answers when guards must come first: always
    a miss (both then wait behind the guards, the cache as a stage, direct answers not at
    all)."""


def _keep(data: bytes, peer: Any, send: Send, start: float) -> bool:
    """Forwarding at once when nothing forwards, or guards come first: never."""
    return False


class CachedAnswers:
    """The answer cache as a stage, behind the guards."""

    def __init__(self, answers: AnswerCache, next: Handler) -> None:
        self.hit = answers.hit
        self.next = next

    def handle(self, req: Request) -> bytes | None:
        reply = self.hit(req.data, req.tcp, req.start)
        return reply if reply is not None else self.next(req)
