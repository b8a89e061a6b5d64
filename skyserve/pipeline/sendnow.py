"""Stage 1c, forwarding at once: a plain UDP query for a name outside our zones is sent
upstream from the UDP reading thread, without the hop to the event loop's thread.

Handing a query to the loop (``call_soon_threadsafe``: a write to its self-pipe, a wake-up,
a pass of ``_run_once``) and taking it through parse, loop check and the zones stage costs
more than forwarding it does. Most forwarded queries are of one shape: one question of
class IN, no EDNS or a plain OPT, a name in none of our zones and no forward cache entry
for it. The reading thread (holding the loop's gate, so this never interleaves with the
loop's work) reads those straight from the raw bytes, makes the ``Request`` the parse
stage would have made, and has the forwarder send the first try
(``Forwarder.send_now``); the reply, failover, TCP retry and the relay to the client
then run exactly as for a query that came the long way (``Forwarding``). The reply is
read by the same thread (``Forwarder.read_with``): one thread handles the query from
end to end, with no hand-over of the GIL and the gate to the loop's thread and back.

Contract: the upstream query and the client's reply are byte for byte those of the general
path (tests/skyserve/pipeline/test_sendnow.py compares them); anything this stage is unsure
of (another shape, loop probes out, a cache entry to serve, a socket to open, an upstream
to skip) returns False and takes the general path.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..forward.cache import Key
from ..forward.forwarder import Forwarder
from ..wire import constants as T
from ..wire.constants import MIN_UDP
from ..wire.query import Query
from .direct import plain_query
from .forwarding import Forwarding
from .request import Build, Request, Send
from .zones import Zones

Deliver = Callable[[Request, Build], None]  # ``Pipeline._deliver``
NOT_HERE = frozenset((T.AXFR, T.IXFR, T.SOA))  # what the transfer stage may answer


class SendNow:
    def __init__(self, forwarder: Forwarder, zones: Zones, forwarding: Forwarding,
                 deliver: Deliver) -> None:
        self.forwarder = forwarder
        self.zones = zones
        self.forwarding = forwarding
        self.deliver = deliver

    def send(self, data: bytes, peer: Any, send: Send, start: float) -> bool:
        """Forward the query now; False when the general path must take it."""
        fwd = self.forwarder
        plain = plain_query(data)
        if plain is None or plain[4] in NOT_HERE or fwd.probes:
            return False
        qid, flags, labels, end, qtype, edns = plain
        if self.zones.authority.zone_of(labels) is not None:
            return False
        pool = fwd.pool_for(labels)
        key = Key(labels, qtype, T.CLASS_IN, edns == 2)
        cache = fwd.cache
        if pool is None or (cache is not None and cache.holds(key, time.monotonic())):
            return False  # REFUSED, or an entry to serve (fresh or stale): the general path
        qname = data[12:end]
        query = Query(qid, flags, qname, labels, qtype, T.CLASS_IN)
        if edns:
            query.edns, query.do = True, edns == 2
            query.udp_size = max(MIN_UDP, data[end + 7] << 8 | data[end + 8])
        req = Request(data, False, peer, send, start, self.deliver)
        req.query = query
        if not fwd.send_now(key, qname, flags, pool, self.forwarding.relayer(req)):
            return False
        if cache is not None:
            cache.get(key, time.monotonic())  # counted as a miss, as ``fetch`` counts one
        return True
