"""Guard stage, response rate limiting: a filter on the replies coming back up the chain.

Contract: every UDP reply, whether made now, deferred or served from the answer cache
(this stage sits before it), is counted against its client prefix's bucket for its kind
(``skyserve.ratelimit``): answers and NODATA per name and type, answers synthesized from
a wildcard per wildcard parent, NXDOMAIN per zone (the SOA owner), every error together.
So a flood of random names is one bucket, like a flood of one name. Over the rate a reply
is sent truncated (every ``slip``-th) or dropped; in log-only mode it is counted and sent.
TCP replies and queries with a valid server cookie are never limited: neither can come
from a spoofed address.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Hashable

from ..ratelimit import Buckets, RrlSettings, Verdict
from ..wire.constants import HEADER, NOERROR, NXDOMAIN, QUESTION
from ..wire.edns import truncated
from ..wire.query import read_name, skip_name
from .context import Shared
from .request import Handler, Request

log = logging.getLogger(__name__)


class RateLimit:
    def __init__(self, shared: Shared, next: Handler, settings: RrlSettings) -> None:
        self.shared = shared
        self.next = next
        self.settings = settings
        self.buckets = Buckets(settings)
        self.counts = shared.stats.guard.rrl

    def handle(self, req: Request) -> bytes | None:
        reply = self.next(req)
        if reply is None:
            req.filter_later(self.check)
            return None
        return self.check(req, reply)

    def check(self, req: Request, reply: bytes) -> bytes | None:
        if req.tcp or req.verified:
            return reply
        ip = req.client_ip()
        if ip is None:
            return reply
        kind = classify(req, reply)
        verdict, first = self.buckets.account((self.buckets.prefix(ip), *kind), time.monotonic())
        if verdict is Verdict.SEND:
            return reply
        counts = self.counts
        counts["limited"] += 1
        counts["slipped" if verdict is Verdict.SLIP else "dropped"] += 1
        if first:
            log.info("rate limiting %s responses to the prefix of %s%s", kind[0], ip,
                     " (log only)" if self.settings.log_only else "")
        if self.settings.log_only:
            return reply
        return truncated(reply) if verdict is Verdict.SLIP else None


def classify(req: Request, reply: bytes) -> tuple[Hashable, ...]:
    """The bucket a reply counts against, after its client prefix."""
    rcode = reply[3] & 0xF
    query = req.query
    if rcode == NOERROR:
        if req.wildcard is not None:
            return ("wildcard", req.wildcard)
        answered = reply[6] or reply[7]
        return ("answer" if answered else "nodata", query.labels, query.qtype)
    if rcode == NXDOMAIN:
        return ("nxdomain", denial_zone(reply))
    return ("error",)


def denial_zone(reply: bytes) -> tuple[str, ...]:
    """The owner of a negative reply's first authority record (its zone's SOA), or () if
    it has none: one bucket for every NXDOMAIN of a zone."""
    _, _, qdcount, ancount, nscount, _ = HEADER.unpack_from(reply)
    if not nscount:
        return ()
    try:
        pos = HEADER.size
        for _ in range(qdcount):
            pos = skip_name(reply, pos) + QUESTION.size
        for _ in range(ancount):
            pos = skip_name(reply, pos)
            pos += 10 + int.from_bytes(reply[pos + 8 : pos + 10], "big")
        return read_name(reply, pos)[0]
    except (IndexError, ValueError):
        return ()
