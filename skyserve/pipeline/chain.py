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
from collections.abc import Callable
from typing import Any

from ..forward.forwarder import Forwarder
from ..index import Change, Index
from ..querylog import QueryLog
from ..stats import Stats
from ..wire.constants import SERVFAIL
from ..wire.query import failure_reply
from ..xfr.primary import Primary
from .context import Settings, Shared
from .forwarding import Forwarding, Refuse
from .loopcheck import LoopCheck
from .parse import Parse
from .request import Handler, Request, Send
from .transfer import Transfer
from .zones import Zones

log = logging.getLogger(__name__)


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
        # Built back to front: each stage is given the one after it.
        last: Handler = (Forwarding(self.shared) if forwarder is not None
                         else Refuse(self.shared)).handle
        self.zones = Zones(self.shared, last)
        after_parse: Handler = self.zones.handle
        if forwarder is not None:
            after_parse = LoopCheck(self.shared, after_parse).handle
        self.primary = primary
        if primary is not None:
            primary.serve_from(self.zones)
            after_parse = Transfer(self.shared, primary, after_parse).handle
        self._first = Parse(self.shared, after_parse).handle

    # -- serving ---------------------------------------------------------------------

    def handle(self, data: bytes, tcp: bool = False, peer: Any = None,
               send: Send | None = None) -> bytes | None:
        """Answer one query: the reply, or None (dropped, or sent later through ``send``)."""
        start = time.perf_counter()
        try:
            reply = self.answers.hit(data, tcp, start)
            if reply is not None:
                if self.querylog is not None:
                    self.querylog.log(data, reply, peer, tcp, 0.0)
                return reply
            reply = self._first(Request(data, tcp, peer, send, start, self._deliver))
        except Exception:
            reply = self._panic(data)
        if reply is not None and self.querylog is not None:
            self.querylog.log(data, reply, peer, tcp, time.perf_counter() - start)
        return reply

    def _deliver(self, req: Request, build: Callable[[], bytes]) -> None:
        """Send a deferred reply, built now; a failure to build it is a panic too."""
        try:
            reply: bytes | None = build()
        except Exception:
            reply = self._panic(req.data)
        if reply is None or req.send is None:
            return
        if self.querylog is not None:
            self.querylog.log(req.data, reply, req.peer, req.tcp,
                              time.perf_counter() - req.start)
        req.send(reply, req.peer)

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
