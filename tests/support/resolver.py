"""dnspython queries to one DNS server on loopback over UDP and TCP, compared as sets of record
texts: for the pod tests, which ask the same question both ways and wait for an answer."""

from __future__ import annotations

import time
from collections.abc import Callable

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

__all__ = ["Answer", "Resolver"]

HOST = "127.0.0.1"
Answer = set[str] | None | str  # records, NXDOMAIN, or what went wrong


class Resolver:
    """Queries to `port` on 127.0.0.1; `logs` is appended to a failure (the servers' logs)."""

    def __init__(self, port: int, logs: Callable[[], str], wait: float = 20.0) -> None:
        self.port, self.logs, self.wait = port, logs, wait

    def answer(self, name: str, rdtype: str, tcp: bool) -> set[str] | None:
        """The answer's records of that type as text (SRV as "port target"); None: NXDOMAIN."""
        query = dns.message.make_query(name, rdtype)
        send = dns.query.tcp if tcp else dns.query.udp
        msg = send(query, HOST, timeout=2.0, port=self.port)
        if msg.rcode() == dns.rcode.NXDOMAIN:
            return None
        rcode = dns.rcode.to_text(msg.rcode())
        assert rcode == "NOERROR", f"{name} {rdtype}: {rcode}"
        want = dns.rdatatype.from_text(rdtype)
        return {f"{rd.port} {rd.target}" if rdtype == "SRV" else rd.to_text()
                for rrset in msg.answer if rrset.rdtype == want for rd in rrset}

    def both(self, name: str, rdtype: str) -> tuple[Answer, Answer]:
        """(UDP answer, TCP answer); an error is its text."""
        return self._try(name, rdtype, False), self._try(name, rdtype, True)

    def _try(self, name: str, rdtype: str, tcp: bool) -> Answer:
        try:
            return self.answer(name, rdtype, tcp)
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"

    def expect(self, name: str, rdtype: str, want: set[str]) -> None:
        """Wait (at most `wait` seconds) until UDP and TCP both answer exactly `want`."""
        deadline = time.monotonic() + self.wait
        while (got := self.both(name, rdtype)) != (want, want):
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} {rdtype}: (udp, tcp) = {got}, want {want}\n"
                                     f"{self.logs()}")
            time.sleep(0.05)
