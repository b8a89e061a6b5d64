"""Guard stage, EDNS TCP keepalive (RFC 7828): tell TCP clients that ask how long we wait.

Contract: a TCP query carrying the edns-tcp-keepalive option gets the option back with
our idle timeout, in units of 100 ms, so a client knows when we will close. Over UDP the
option is ignored, as the RFC says. Other queries pass through untouched.
"""

from __future__ import annotations

import struct

from ..wire.edns import TCP_KEEPALIVE, add_option, find_option
from .request import Handler, Request


class Keepalive:
    def __init__(self, next: Handler, timeout: float) -> None:
        self.next = next
        self.option = struct.pack("!H", min(0xFFFF, round(timeout * 10)))

    def handle(self, req: Request) -> bytes | None:
        if not (req.tcp and req.query.edns) or not _asked(req.data):
            return self.next(req)
        reply = self.next(req)
        if reply is None:
            req.filter_later(self.check)
            return None
        return self.check(req, reply)

    def check(self, req: Request, reply: bytes) -> bytes:
        return add_option(reply, TCP_KEEPALIVE, self.option)


def _asked(data: bytes) -> bool:
    try:
        return find_option(data, TCP_KEEPALIVE) is not None
    except ValueError:  # a broken option list: answer as if the option were not there
        return False
