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


class Request:
    """One query on its way through the stages.

    ``query`` is set by the parse stage; stages after it may read it. ``send`` is how a
    reply produced later reaches the client (None: the caller cannot wait for one, so
    nothing may be deferred).
    """

    __slots__ = ("_deliver", "data", "peer", "query", "send", "start", "tcp")

    query: Query

    def __init__(self, data: bytes, tcp: bool, peer: Any, send: Send | None, start: float,
                 deliver: Callable[[Request, Callable[[], bytes]], None]) -> None:
        self.data = data
        self.tcp = tcp
        self.peer = peer
        self.send = send
        self.start = start  # time.perf_counter() when it arrived
        self._deliver = deliver

    @property
    def can_defer(self) -> bool:
        return self.send is not None

    def later(self, build: Callable[[], bytes]) -> None:
        """Answer after the stage has returned: ``build`` makes the reply when it is due."""
        self._deliver(self, build)

    def count(self, tally: Tally, zone: str, rcode: int, plugin: str, size: int) -> int:
        """Count the reply in the tally; returns its Stat's id."""
        seconds = time.perf_counter() - self.start
        q = self.query
        return tally.add(("tcp" if self.tcp else "udp", zone, qtype_name(q.qtype),
                          rcode_name(rcode), q.do, plugin, len(self.data), size,
                          duration_bucket(seconds)), seconds)
