"""Stage 3, loop check (CoreDNS's ``loop``), only while forwarding.

Contract: at start-up the forwarder sends each upstream a query for a random name; if one
comes back to us, that upstream forwards to us and is marked looped (never used again),
and the probe is REFUSED so the loop ends. Every other query passes on untouched.
"""

from __future__ import annotations

from ..wire.constants import REFUSED
from .context import Shared
from .request import Handler, Request


class LoopCheck:
    def __init__(self, shared: Shared, next: Handler) -> None:
        assert shared.forwarder is not None
        self.forwarder = shared.forwarder
        self.shared = shared
        self.next = next

    def handle(self, req: Request) -> bytes | None:
        if self.forwarder.probes and self.forwarder.probe_seen(req.query.labels):
            return self.shared.error(req, REFUSED, "dropped")
        return self.next(req)
