"""DNS helpers shared by the skyserve tests: where a name's record lives in etcd, and the
addresses a reply carries."""

from __future__ import annotations

import dns.message
import dns.rdatatype

__all__ = ["addresses", "key"]


def key(prefix: str, name: str) -> str:
    """The etcd key of `name`'s record under `prefix` (SkyDNS layout: labels reversed),
    e.g. key("/skydns", "x.web.skydns.test") == "/skydns/test/skydns/web/x"."""
    return prefix + "/" + "/".join(reversed(name.rstrip(".").split(".")))


def addresses(reply: dns.message.Message) -> list[str]:
    """The A and AAAA addresses in the answer section, sorted (order is not compared)."""
    wanted = (dns.rdatatype.A, dns.rdatatype.AAAA)
    return sorted(rd.to_text() for rrset in reply.answer for rd in rrset if rrset.rdtype in wanted)
