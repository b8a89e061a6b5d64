"""Stage 5, forwarding: names outside our zones, through the forwarder and its cache.

Contract: the query is deferred and answered once the forwarder's ``Outcome`` arrives —
the upstream reply re-addressed to the client (TTLs aged, stale answers at 30 s), or an
error rcode of our own. When no upstream covers the name, or the caller cannot wait for a
deferred reply, it is REFUSED at once. A relayed reply from the forward cache is kept in
the answer cache, its TTLs re-aged in place each second (``forward.aging``) while the
forward cache's entry lives. ``Refuse`` ends the chain when nothing forwards.
"""

from __future__ import annotations

import time

from ..forward.aging import Aging, ticks_at, ttl_offsets
from ..forward.cache import STALE_TTL, Key
from ..forward.policy import Done, Outcome
from ..wire.constants import EDE_NOT_AUTHORITATIVE, EDE_STALE, REFUSED, TC
from ..wire.query import ede_option, reply_limit
from ..wire.response import relay, rotations
from .context import NO_RECORDS, Shared
from .request import Request

MAX_ROTATIONS = 8


class Forwarding:
    def __init__(self, shared: Shared) -> None:
        assert shared.forwarder is not None
        self.forwarder = shared.forwarder
        self.shared = shared

    def handle(self, req: Request) -> bytes | None:
        query = req.query
        pool = self.forwarder.pool_for(query.labels)
        if pool is None or not req.can_defer:
            return self.shared.error(req, REFUSED, "dropped", EDE_NOT_AUTHORITATIVE)

        self.forwarder.fetch(query.labels, query.qname, query.qtype, query.qclass,
                             flags=query.flags, do=query.do, tcp=req.tcp,
                             done=self.relayer(req), pool=pool)
        return None

    def relayer(self, req: Request) -> Done:
        """What the forwarder calls with the outcome: the request's deferred reply."""

        def done(outcome: Outcome) -> None:
            req.later(lambda: self._relay(req, outcome))

        return done

    def _relay(self, req: Request, outcome: Outcome) -> bytes:
        resp, shared = outcome.response, self.shared
        if resp is None:
            ede = ede_option(outcome.ede) if outcome.ede is not None else b""
            reply = shared.render(req, outcome.rcode, NO_RECORDS, aa=False, ede=ede).wire
            req.count(shared.stats.tally, ".", outcome.rcode, "forward", len(reply))
            return reply
        cap = None  # the entry's TTL (capped by --cache-max-ttl) minus its age in whole seconds
        if outcome.expires and not outcome.stale:
            cap = max(0, round(outcome.expires - outcome.stored) - outcome.age)
        max_udp = shared.settings.max_udp
        limit = reply_limit(req.query, req.tcp, max_udp)
        fixed = STALE_TTL if outcome.stale else None
        turns = min(rotations(resp), MAX_ROTATIONS) if shared.settings.shuffle else 1
        options = shared.options(req, ede_option(EDE_STALE) if outcome.stale else b"")
        turn = 0 if turns == 1 else shared.answers.next_turn() % turns
        keep = outcome.expires and not outcome.stale  # every rotation then, to keep them
        variants = [relay(resp, req.query, limit=limit, max_udp=max_udp, age=outcome.age,
                          fixed_ttl=fixed, max_ttl=cap, rotate=k, options=options)
                    for k in (range(turns) if keep else (turn,))]
        reply = variants[turn if keep else 0]
        plugin = "cache" if outcome.cached else "forward"
        stat_id = req.count(shared.stats.tally, ".", resp.rcode, plugin, len(reply))
        if keep and not reply[2] & (TC >> 8):
            # Keep the bytes until their TTLs would tick down by one second.
            until = ticks_at(outcome.expires, outcome.stored, outcome.age)
            if until > time.monotonic():
                shared.answers.keep_forwarded(req, variants, stat_id, until,
                                              self._aging(req, outcome, variants))
        return reply

    def _aging(self, req: Request, outcome: Outcome, variants: list[bytes]) -> Aging | None:
        cache, entry, q = self.forwarder.cache, outcome.entry, req.query
        if cache is None or entry is None:
            return None
        return Aging(cache, Key(q.labels, q.qtype, q.qclass, q.do), entry, outcome.age,
                     tuple(ttl_offsets(v) for v in variants))


class Refuse:
    """The end of the chain when nothing forwards: every name we do not serve is REFUSED."""

    def __init__(self, shared: Shared) -> None:
        self.shared = shared

    def handle(self, req: Request) -> bytes | None:
        return self.shared.error(req, REFUSED, "dropped", EDE_NOT_AUTHORITATIVE)
