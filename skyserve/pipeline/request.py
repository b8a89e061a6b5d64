"""What travels down the chain: one query and how to answer it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..tally import Tally, duration_bucket
from ..wire.constants import qtype_name, rcode_name
from ..wire.query import Query

Send = Callable[[bytes, Any], None]
Handler = Callable[["Request"], "bytes | None"]  # a stage: reply now, or None
Build = Callable[[], "bytes | None"]  # makes a deferred reply (None: send nothing)
Check = Callable[["Request", bytes], "bytes | None"]  # a response-side stage's filter


class Request:
    """One query on its way through the stages.

    ``query`` is set by the parse stage; stages after it may read it. ``send`` is how a
    reply produced later reaches the client (None: the caller cannot wait for one, so
    nothing may be deferred). ``verified`` is set by the cookies stage for a query with a
    valid server cookie; ``wildcard`` by the zones stage for an answer synthesized from a
    wildcard (its parent's labels), so rate limiting counts those per wildcard.
    """

    __slots__ = ("_after", "_deliver", "data", "peer", "query", "send", "start", "tcp", "verified",
                 "wildcard")

    query: Query

    def __init__(self, data: bytes, tcp: bool, peer: Any, send: Send | None, start: float,
                 deliver: Callable[[Request, Build], None]) -> None:
        self.data = data
        self.tcp = tcp
        self.peer = peer
        self.send = send
        self.start = start  # time.perf_counter() when it arrived
        self._deliver = deliver
        self._after: Check | None = None
        self.verified = False
        self.wildcard: tuple[str, ...] | None = None

    @property
    def can_defer(self) -> bool:
        return self.send is not None

    def later(self, build: Build) -> None:
        """Answer after the stage has returned: ``build`` makes the reply when it is due."""
        after = self._after
        if after is None:
            self._deliver(self, build)
            return

        def checked() -> bytes | None:
            reply = build()
            return None if reply is None else after(self, reply)

        self._deliver(self, checked)

    def filter_later(self, check: Check) -> None:
        """Pass a reply deferred by a later stage through ``check`` before it is sent: how a
        response-side stage sees replies it did not get back from its next stage. Stages
        register on the way back up, so each check runs after those registered before it,
        as it would on a reply returned at once."""
        inner = self._after
        if inner is None:
            self._after = check
            return

        def both(req: Request, reply: bytes) -> bytes | None:
            first = inner(req, reply)
            return None if first is None else check(req, first)

        self._after = both

    def client_ip(self) -> str | None:
        """The client's address: UDP peers are (host, port, ...), TCP ones the stream."""
        peer = self.peer
        if isinstance(peer, tuple):
            return str(peer[0])
        if peer is None:
            return None
        name = peer.get_extra_info("peername")
        return str(name[0]) if name else None

    def count(self, tally: Tally, zone: str, rcode: int, plugin: str, size: int) -> int:
        """Count the reply in the tally; returns its Stat's id."""
        seconds = time.perf_counter() - self.start
        q = self.query
        return tally.add(("tcp" if self.tcp else "udp", zone, qtype_name(q.qtype),
                          rcode_name(rcode), q.do, plugin, len(self.data), size,
                          duration_bucket(seconds)), seconds)
