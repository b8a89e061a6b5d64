"""Guard stage, access control: per-zone allow, block or drop by source prefix.

Contract: an allowed query passes on. A blocked one is REFUSED, with EDE 18 Prohibited
(RFC 8914) when the client speaks EDNS; a dropped one gets no reply. Both are counted per
zone (``coredns_acl_blocked_requests_total``, ``coredns_acl_dropped_requests_total``).
The rules and how they are matched are in ``skyserve.access``.
"""

from __future__ import annotations

from ..access import ALLOW, DROP, Acl, Rule
from ..wire.constants import REFUSED
from ..wire.edns import EDE, PROHIBITED, add_option, ede
from .context import Shared
from .request import Handler, Request


class AccessControl:
    def __init__(self, shared: Shared, next: Handler, rules: tuple[Rule, ...]) -> None:
        self.shared = shared
        self.next = next
        self.acl = Acl(rules)
        self.counts = shared.stats.guard.acl

    def handle(self, req: Request) -> bytes | None:
        ip = req.client_ip()
        if ip is None:
            return self.next(req)
        action, zone = self.acl.decide(req.query.labels, ip)
        if action == ALLOW:
            return self.next(req)
        self.counts[(zone, action)] += 1
        if action == DROP:
            return None
        return add_option(self.shared.error(req, REFUSED, zone), EDE, ede(PROHIBITED))
