"""The amplification benchmark's zone, built both ways from one list: SkyDNS records in etcd
for skyserve and a zone file for knot, with the names an attacker would ask for: ANY on a
name with many RRsets, a large TXT RRset, and DNSKEY (no DNSSEC in either: NODATA)."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path

from benchkit.dataset import PREFIX
from benchkit.net import etcd_txn_put

ZONE = "amp.test."

TTL = 300


@dataclass(frozen=True)
class Kind:
    """One kind of flood query: a label for the report, the name and the type asked."""
    label: str
    name: str
    qtype: int


ANY, TXT, DNSKEY = 255, 16, 48

KINDS = (Kind("ANY", f"many.{ZONE}", ANY), Kind("TXT", f"big.{ZONE}", TXT),
         Kind("DNSKEY", ZONE, DNSKEY))


def records(txt_strings: int, txt_len: int) -> list[tuple[str, str, dict[str, object]]]:
    """(owner relative to the zone, key leaf, SkyDNS value) for every record. The ANY name
    is not "any": to SkyDNS that label is a wildcard, as "*" is."""
    out: list[tuple[str, str, dict[str, object]]] = []
    out += [("many", f"a{i}", {"host": f"192.0.2.{i}"}) for i in range(1, 5)]
    out += [("many", f"v{i}", {"host": f"2001:db8::{i}"}) for i in range(1, 5)]
    out += [("many", f"t{i}", {"text": f"v=spf1 ip4:192.0.2.{i} ip6:2001:db8::{i} -all"})
            for i in range(1, 3)]
    out += [("many", f"m{i}", {"host": f"mx{i}.{ZONE}", "mail": True, "priority": 10 * i})
            for i in range(1, 3)]
    out += [(f"mx{i}", "x", {"host": f"192.0.2.{10 + i}"}) for i in range(1, 3)]
    # distinct strings of letters and digits: no quoting, no de-duplication by either server
    out += [("big", f"t{i}", {"text": (f"{i}" + "abcdefghijklmnopqrstuvwxyz0123456789" * 8)
                              [:txt_len]}) for i in range(txt_strings)]
    return [(owner, leaf, {**value, "ttl": TTL}) for owner, leaf, value in out]


def key(owner: str, leaf: str) -> str:
    labels = [*reversed(ZONE.rstrip(".").split(".")), *reversed(owner.split("."))]
    return f"{PREFIX}/{'/'.join(labels)}/{leaf}"


def zone_line(owner: str, value: dict[str, object]) -> str:
    """The zone-file record skyserve answers for this SkyDNS value at ``owner``."""
    host, text = str(value.get("host", "")), value.get("text")
    if text:
        return f'{owner} TXT "{text}"'
    if value.get("mail"):
        return f"{owner} MX {value['priority']} {host}"
    rtype = "A" if ipaddress.ip_address(host).version == 4 else "AAAA"
    return f"{owner} {rtype} {host}"


def load(etcd_port: int, txt_strings: int, txt_len: int) -> None:
    etcd_txn_put(etcd_port, [(key(o, leaf), json.dumps(v))
                             for o, leaf, v in records(txt_strings, txt_len)])


def write_zone(work: Path, txt_strings: int, txt_len: int) -> Path:
    path = work / f"{ZONE}zone"
    lines = [f"$ORIGIN {ZONE}", f"$TTL {TTL}",
             f"@ SOA ns.dns.{ZONE} hostmaster.{ZONE} 1 3600 600 86400 60",
             f"@ NS ns.dns.{ZONE}", "ns.dns A 127.0.0.1"]
    lines += [zone_line(o, v) for o, _, v in records(txt_strings, txt_len)]
    path.write_text("\n".join(lines) + "\n")
    return path
