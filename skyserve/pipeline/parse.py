"""Stage 2, parse: the header, the question and EDNS, before anything is looked up.

Contract: passes on only a query with one question, opcode QUERY and EDNS version 0 (or
no EDNS), with ``Request.query`` set. Too short or a response: dropped. Malformed:
FORMERR. Another opcode: NOTIMP. A higher EDNS version: BADVERS (RFC 6891 section 6.1.3).
"""

from __future__ import annotations

from ..wire.constants import BADVERS, EDE_OTHER, NOTIMP
from ..wire.query import Drop, FormatError, parse_query
from .context import Shared
from .request import Handler, Request


class Parse:
    def __init__(self, shared: Shared, next: Handler) -> None:
        self.shared = shared
        self.next = next

    def handle(self, req: Request) -> bytes | None:
        try:
            query = req.query = parse_query(req.data)
        except Drop:
            self.shared.stats.queries["dropped"] += 1
            return None
        except FormatError as exc:
            self.shared.stats.queries["formerr"] += 1
            return exc.reply
        if query.opcode != 0:
            return self.shared.error(req, NOTIMP, "dropped", EDE_OTHER,
                                     f"opcode {query.opcode} is not implemented")
        if query.edns and query.edns_version > 0:
            return self.shared.error(req, BADVERS, "dropped")
        return self.next(req)
