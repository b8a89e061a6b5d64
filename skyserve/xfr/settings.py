"""The transfer options, checked: who may transfer which zone, with which key, and whom
to NOTIFY.

``--transfer ZONE=CIDR[,CIDR...]``   sources allowed to transfer ZONE (none: nobody)
``--transfer-key ZONE=KEY[,KEY...]`` ZONE's transfers must be signed with one of these keys
``--notify ZONE=HOST:PORT[,...]``    secondaries to NOTIFY when ZONE changes
``--tsig-key NAME=ALGORITHM:SECRET`` a TSIG key (hmac-sha256, base64 secret)
``--serial-offset N``                added to the etcd revision to make the SOA serial

The option values stay plain strings (the config is hashed as JSON); ``Transfers`` is
built from them once.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from skydns import options as o
from skydns.netaddr import split_hostport
from skydns.record import Labels, name_labels
from skydns.service import zone_name

from .tsig import Key, parse_key

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _zone_list(raw: Any, item: Any) -> tuple[str, tuple[str, ...]]:
    zone, sep, rest = o.text(raw).partition("=")
    values = tuple(v.strip() for v in rest.replace(";", ",").split(",") if v.strip())
    if not sep or not values:
        raise ValueError(f"expected ZONE=VALUE[,VALUE...], got {raw!r}")
    return zone_name(zone), tuple(item(v) for v in values)


def transfer(raw: Any) -> tuple[str, tuple[str, ...]]:
    return _zone_list(raw, lambda v: str(ipaddress.ip_network(v, strict=False)))


def notify(raw: Any) -> tuple[str, tuple[str, ...]]:
    def target(value: str) -> str:
        host, port = split_hostport(value, 53)
        ipaddress.ip_address(host)  # NOTIFY goes to addresses: no resolving here
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return _zone_list(raw, target)


def transfer_key(raw: Any) -> tuple[str, tuple[str, ...]]:
    return _zone_list(raw, lambda v: ".".join(name_labels(v)) + ".")


def tsig_key(raw: Any) -> str:
    parse_key(o.text(raw))
    return o.text(raw).strip()


OPTIONS: tuple[o.Option, ...] = (
    o.Option("transfer", transfer, [], "ZONE=CIDR[,CIDR...]: allow AXFR/IXFR of ZONE from "
             "these sources (repeatable; ';' separates several in one value)", repeat=True,
             separator=";"),
    o.Option("transfer-key", transfer_key, [], "ZONE=KEY[,KEY...]: require TSIG with one of "
             "these --tsig-key names for ZONE's transfers (repeatable)", repeat=True,
             separator=";"),
    o.Option("notify", notify, [], "ZONE=HOST:PORT[,...]: send NOTIFY to these secondaries "
             "when ZONE changes (repeatable)", repeat=True, separator=";"),
    o.Option("tsig-key", tsig_key, [], "NAME=hmac-sha256:BASE64SECRET: a TSIG key "
             "(repeatable)", repeat=True, separator=";"),
    o.Option("serial-offset", o.integer(0, 2**32 - 1), 0,
             "added to the etcd revision to make the SOA serial (raise it after restoring "
             "etcd from a snapshot)"),
)


@dataclass(frozen=True, slots=True)
class ZonePolicy:
    allow: tuple[Network, ...] = ()
    keys: tuple[Labels, ...] = ()  # one of these must sign; () means none is required
    notify: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class Transfers:
    zones: dict[str, ZonePolicy] = field(default_factory=dict)  # zone text -> policy
    keys: dict[Labels, Key] = field(default_factory=dict)
    serial_offset: int = 0

    @property
    def enabled(self) -> bool:
        return bool(self.zones)

    def allowed(self, zone: str, address: str) -> bool:
        policy = self.zones.get(zone)
        if policy is None:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in policy.allow)


def build(zones: Sequence[str], values: dict[str, Any]) -> Transfers:
    """Check the options against each other and the zones; raise ConfigError."""
    keys: dict[Labels, Key] = {}
    for raw in values["tsig_key"]:
        key = parse_key(raw)
        if key.name in keys:
            raise o.ConfigError(f"--tsig-key: key {'.'.join(key.name)}. is defined twice")
        keys[key.name] = key
    allow = _per_zone("transfer", values["transfer"], zones)
    need = _per_zone("transfer-key", values["transfer_key"], zones)
    targets = _per_zone("notify", values["notify"], zones)
    for option, table in (("transfer-key", need), ("notify", targets)):
        for zone in table:
            if zone not in allow:
                raise o.ConfigError(f"--{option}: {zone} has no --transfer, so no secondary "
                                    "could transfer it")
    for zone, names in need.items():
        for name in names:
            if name_labels(name) not in keys:
                raise o.ConfigError(f"--transfer-key: {zone} names {name}, which no "
                                    "--tsig-key defines")
    policies = {
        zone: ZonePolicy(
            tuple(ipaddress.ip_network(c) for c in cidrs),
            tuple(name_labels(k) for k in need.get(zone, ())),
            tuple(split_hostport(t, 53) for t in targets.get(zone, ())))
        for zone, cidrs in allow.items()}
    return Transfers(policies, keys, values["serial_offset"])


def _per_zone(option: str, items: Sequence[tuple[str, tuple[str, ...]]],
              zones: Sequence[str]) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for zone, values in items:
        if zone not in zones:
            raise o.ConfigError(f"--{option}: {zone} is not one of the --zone zones")
        out[zone] = tuple(dict.fromkeys(out.get(zone, ()) + values))
    return out
