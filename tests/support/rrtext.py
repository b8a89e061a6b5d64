"""Records from the lookup layer as short text, for readable assertions."""

from __future__ import annotations

import ipaddress

from skyserve.wire import constants as T
from skyserve.wire.rr import RR


def show(rrs: list[RR]) -> list[str]:
    """Records as short, sortable text: 'owner TYPE data'."""
    out = []
    for r in rrs:
        owner = ".".join(r.owner)
        if r.rtype in (T.A, T.AAAA):
            data = str(ipaddress.ip_address(r.rdata[0]))
        elif r.rtype in (T.CNAME, T.PTR, T.NS):
            data = ".".join(r.rdata[0])
        elif r.rtype == T.SRV:
            data = f"{r.rdata[0]} {r.rdata[1]} {r.rdata[2]} {'.'.join(r.rdata[3])}"
        elif r.rtype == T.MX:
            data = f"{r.rdata[0]} {'.'.join(r.rdata[1])}"
        elif r.rtype == T.TXT:
            data = "|".join(s.decode() for s in r.rdata)
        else:
            data = "SOA"
        out.append(f"{owner} {r.rtype} {data}")
    return sorted(out)
