"""DNS helpers shared by the tests: where a name's record lives in etcd, the addresses a
reply carries, and waiting for a DNS server we started to answer."""

from __future__ import annotations

import time

import dns.exception
import dns.message
import dns.query
import dns.rdatatype

from tests.support.procutil import LoggedProcess

__all__ = ["addresses", "key", "wait_answering"]


def key(prefix: str, name: str) -> str:
    """The etcd key of `name`'s record under `prefix` (SkyDNS layout: labels reversed),
    e.g. key("/skydns", "x.web.skydns.test") == "/skydns/test/skydns/web/x"."""
    return prefix + "/" + "/".join(reversed(name.rstrip(".").split(".")))


def addresses(reply: dns.message.Message) -> list[str]:
    """The A and AAAA addresses in the answer section, sorted (order is not compared)."""
    wanted = (dns.rdatatype.A, dns.rdatatype.AAAA)
    return sorted(rd.to_text() for rrset in reply.answer for rd in rrset if rrset.rdtype in wanted)


def wait_answering(proc: LoggedProcess, port: int, probe: dns.message.Message, what: str,
                   timeout: float) -> None:
    """Until a DNS server we started answers ``probe`` on 127.0.0.1:``port``; RuntimeError
    with its log tail when it exits or stays silent for ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if not proc.running:
            raise RuntimeError(f"{what} exited:\n{proc.log_tail()}")
        try:
            dns.query.udp(probe, "127.0.0.1", port=port, timeout=0.2)
            return
        except (dns.exception.Timeout, OSError):
            pass
        if time.monotonic() >= deadline:
            raise RuntimeError(f"{what} not answering after {timeout:.0f}s:\n{proc.log_tail()}")
        time.sleep(0.1)

