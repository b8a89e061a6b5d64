"""Stage 1c, forwarding at once: a plain UDP query for a name outside our zones is sent
upstream from the UDP reading thread, without the hop to the event loop's thread.

Handing a query to the loop (``call_soon_threadsafe``: a write to its self-pipe, a wake-up,
a pass of ``_run_once``) and taking it through parse, loop check and the zones stage costs
more than forwarding it does. Most forwarded queries are of one shape: one question of
class IN, no EDNS or a plain OPT, a name in none of our zones and no forward cache entry
for it. The reading thread (holding the loop's gate, so this never interleaves with the
loop's work) reads those straight from the raw bytes, makes the ``Request`` the parse
stage would have made, and has the forwarder send the first try
(``Forwarder.send_now``; the datagram goes out at once when no other reply is awaited,
else once the thread has read the queries that were waiting, with the others:
``forward.sockets.Outbox``); the reply, failover, TCP
retry and the relay to the client then run exactly as for a query that came the long way
(``Forwarding``). The reply is
read by the same thread (``Forwarder.read_with``): one thread handles the query from
end to end, with no hand-over of the GIL and the gate to the loop's thread and back.

When no forward cache keeps the reply, a plain one (``forward.raw``: one question as we
asked it, an answer's rcode, our OPT to swap in, nothing to rotate or truncate) is relayed
from its bytes (``Relayed``): a new header, its question and records copied, our OPT;
no ``Request``, ``Query`` or parsed ``Response`` is made for it. Anything else comes back
to ``Relayed`` as an ``Outcome`` and goes the general way (``Forwarding.relayer``).

Contract: the upstream query and the client's reply are byte for byte those of the general
path (tests/skyserve/pipeline/test_sendnow.py compares them); anything this stage is unsure
of (another shape, loop probes out, a cache entry to serve, a socket to open, an upstream
to skip) returns False and takes the general path.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable
from typing import Any

from ..forward.cache import Key
from ..forward.policy import Outcome
from ..tally import DURATION_BUCKETS
from ..wire import constants as T
from ..wire.constants import CD, HEADER, MIN_UDP, QTYPES, RA, RCODES, RD, TC
from ..wire.query import Query
from .context import Shared
from .direct import Plain, plain_query
from .forwarding import Forwarding
from .request import Build, Request, Send
from .zones import Zones

Deliver = Callable[[Request, Build], None]  # ``Pipeline._deliver``
Finish = Callable[[bytes, bool, Any, "Send | None", float, Build], None]  # ``Pipeline._finish``
NOT_HERE = frozenset((T.AXFR, T.IXFR, T.SOA))  # what the transfer stage may answer
KEPT_FLAGS = ~(RD | CD | TC)  # of the upstream's header; TC is never set on a plain reply
new_key = tuple.__new__  # a ``Key`` made in C: its generated ``__new__`` is Python code


class SendNow:
    def __init__(self, shared: Shared, zones: Zones, forwarding: Forwarding,
                 deliver: Deliver, finish: Finish) -> None:
        assert shared.forwarder is not None
        self.forwarder = shared.forwarder
        self.zones = zones
        self.forwarding = forwarding
        self.deliver = deliver
        self.finish = finish
        self.tally = shared.stats.tally
        self.max_udp = shared.settings.max_udp
        self.shuffle = shared.settings.shuffle
        self.opt = shared.plain_opt

    def send(self, data: bytes, peer: Any, send: Send, start: float) -> bool:
        """Forward the query now; False when the general path must take it."""
        fwd = self.forwarder
        plain = plain_query(data)
        if plain is None or plain[4] in NOT_HERE or fwd.probes:
            return False
        labels, end, qtype, edns = plain[2:]
        if self.zones.authority.zone_of(labels) is not None:
            return False
        pool = fwd.only_pool or fwd.pool_for(labels)
        key = new_key(Key, (labels, qtype, T.CLASS_IN, edns == 2))
        cache = fwd.cache
        if pool is None or (cache is not None and cache.holds(key, time.monotonic())):
            return False  # REFUSED, or an entry to serve (fresh or stale): the general path
        relayed = Relayed(self, data, plain, peer, send, start)
        if not fwd.send_now(key, data[12:end], plain[1], pool, relayed, relayed):
            return False
        if cache is not None:
            cache.get(key, time.monotonic())  # counted as a miss, as ``fetch`` counts one
        return True

    def request(self, r: Relayed) -> Request:
        """The ``Request`` the parse stage would have made of ``r``'s query."""
        data, (qid, flags, labels, end, qtype, edns) = r.data, r.plain
        query = Query(qid, flags, data[12:end], labels, qtype, T.CLASS_IN)
        if edns:
            query.edns, query.do = True, edns == 2
            query.udp_size = max(MIN_UDP, data[end + 7] << 8 | data[end + 8])
        req = Request(data, False, r.peer, r.send, r.start, self.deliver)
        req.query = query
        return req


class Relayed:
    """A query forwarded at once: what the forwarder calls back with its reply."""

    __slots__ = ("cut", "data", "peer", "plain", "reply", "send", "stage", "start")

    def __init__(self, stage: SendNow, data: bytes, plain: Plain, peer: Any, send: Send,
                 start: float) -> None:
        self.stage, self.data, self.plain = stage, data, plain
        self.peer, self.send, self.start = peer, send, start
        self.reply, self.cut = b"", 0  # the upstream's plain reply, and where its OPT starts

    def __call__(self, outcome: Outcome) -> None:
        """Any other outcome: the general path's relay (``Forwarding.relayer``)."""
        stage = self.stage
        stage.forwarding.relayer(stage.request(self))(outcome)

    def fits(self, data: bytes, cut: int) -> bool:
        """Whether ``relay`` would copy the records as they are: the client's size limit
        (``reply_limit``) is not passed, and there is no address RRset to rotate."""
        stage, edns = self.stage, self.plain[5]
        if stage.shuffle and (data[6] or data[7] > 1):
            return False  # maybe an RRset to rotate: ``rotations`` decides
        if not edns:
            return cut <= MIN_UDP
        end = self.plain[3]
        asked = self.data[end + 7] << 8 | self.data[end + 8]
        return cut + len(stage.opt[edns]) <= max(MIN_UDP, min(asked, stage.max_udp))

    def relay(self, data: bytes, cut: int) -> None:
        self.reply, self.cut = data, cut
        self.stage.finish(self.data, False, self.peer, self.send, self.start, self.build)

    def build(self) -> bytes:
        """``wire.response.relay``'s bytes for a plain reply with nothing aged or rotated."""
        data, cut, stage = self.reply, self.cut, self.stage
        qid, flags, _, _, qtype, edns = self.plain
        opt = stage.opt[edns]
        head = (data[2] << 8 | data[3]) & KEPT_FLAGS | flags & (RD | CD) | RA
        additional = (data[10] << 8 | data[11]) - (cut < len(data)) + (edns > 0)
        reply = HEADER.pack(qid, head, 1, data[6] << 8 | data[7], data[8] << 8 | data[9],
                            additional) + data[12:cut] + opt
        seconds = time.perf_counter() - self.start
        rcode = head & 0xF  # ``qtype_name``, ``rcode_name`` and ``duration_bucket``, inline:
        stage.tally.add(("udp", ".", QTYPES.get(qtype, "other"), RCODES.get(rcode) or str(rcode),
                         edns == 2, "forward", len(self.data), len(reply),
                         bisect_left(DURATION_BUCKETS, seconds)), seconds)
        return reply
