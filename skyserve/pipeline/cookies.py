"""Guard stage, DNS cookies (RFC 7873) with RFC 9018 server cookies.

Contract: a query without a COOKIE option passes on untouched. A malformed one (not 8
bytes, nor 16 to 40) is FORMERR. Otherwise every reply that goes out, now or deferred,
carries the client cookie and a fresh server cookie of ours; a query whose server cookie
is ours, for this client and under an hour old, is marked ``verified`` (rate limiting
lets it through). When cookies are required, a UDP query without such a cookie gets
BADCOOKIE with a fresh one, so the client can retry with it. Replies that the cookie
would push past the client's UDP size go out truncated instead.
"""

from __future__ import annotations

import time

from ..cookiejar import CLIENT_COOKIE, Jar, address_bytes
from ..wire.constants import FORMERR
from ..wire.edns import BADCOOKIE, COOKIE, add_option, find_option, truncated
from ..wire.query import reply_limit
from .context import Shared
from .request import Handler, Request


class Cookies:
    def __init__(self, shared: Shared, next: Handler, jar: Jar) -> None:
        self.shared = shared
        self.next = next
        self.jar = jar
        self.counts = shared.stats.guard.cookies

    def handle(self, req: Request) -> bytes | None:
        if not req.query.edns:
            return self.next(req)
        try:
            option = find_option(req.data, COOKIE)
        except ValueError:
            option = b""  # an option list that does not parse is as malformed
        if option is None:
            return self.next(req)
        if len(option) != CLIENT_COOKIE and not 16 <= len(option) <= 40:
            self.counts["malformed"] += 1
            return self.shared.error(req, FORMERR, "dropped")
        ip = req.client_ip()
        if ip is None:
            return self.next(req)
        address, now = address_bytes(ip), int(time.time())
        client, server = option[:CLIENT_COOKIE], option[CLIENT_COOKIE:]
        if server and self.jar.valid(client, server, address, now):
            req.verified = True
            self.counts["valid"] += 1
        else:
            self.counts["fresh" if server else "client_only"] += 1
        cookie = client + self.jar.mint(client, address, now)
        if not req.verified and self.jar.require and not req.tcp:
            self.counts["badcookie"] += 1
            return self._with(req, self.shared.error(req, BADCOOKIE, "dropped"), cookie)
        reply = self.next(req)
        if reply is None:
            req.filter_later(lambda r, deferred: self._with(r, deferred, cookie))
            return None
        return self._with(req, reply, cookie)

    def _with(self, req: Request, reply: bytes, cookie: bytes) -> bytes:
        out = add_option(reply, COOKIE, cookie)
        if not req.tcp and len(out) > reply_limit(req.query, False, self.shared.settings.max_udp):
            out = add_option(truncated(reply), COOKIE, cookie)
        return out
