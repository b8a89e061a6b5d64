"""Per-zone access rules by source prefix, in the spirit of CoreDNS's ``acl`` plugin.

A rule is ``ZONE=ACTION:CIDR[,CIDR...]`` with ACTION ``allow``, ``block`` (REFUSED with
EDE 18 Prohibited) or ``drop`` (no reply at all). A query is judged by the rules of the
most specific zone that has rules and contains its name; they are tried in the order
given and the first whose prefixes hold the client wins. When none does, the query is
allowed, unless that zone has an ``allow`` rule: then only what is allowed gets in.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from skydns.record import Labels

ACTIONS = ("allow", "block", "drop")
ALLOW, BLOCK, DROP = ACTIONS
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Rule:
    zone: str  # as written, with the trailing dot
    action: str
    nets: tuple[Network, ...]

    @property
    def labels(self) -> Labels:
        return tuple(self.zone.rstrip(".").split(".")) if self.zone != "." else ()


def parse_rule(raw: Any) -> Rule:
    """``ZONE=ACTION:CIDR[,CIDR...]``; ValueError saying what is wrong."""
    if not isinstance(raw, str):
        raise ValueError(f"expected ZONE=ACTION:CIDR[,CIDR...], got {raw!r}")
    zone, sep, rest = raw.partition("=")
    action, sep2, cidrs = rest.partition(":")
    if not sep or not sep2 or not zone.strip() or not cidrs.strip():
        raise ValueError(f"expected ZONE=ACTION:CIDR[,CIDR...], got {raw!r}")
    action = action.strip().lower()
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {', '.join(ACTIONS)}, got {action!r}")
    try:
        nets = tuple(ipaddress.ip_network(c.strip(), strict=False)
                     for c in cidrs.split(",") if c.strip())
    except ValueError as exc:
        raise ValueError(f"{raw!r}: {exc}") from None
    zone = zone.strip().lower()
    return Rule(zone if zone.endswith(".") else zone + ".", action, nets)


class Acl:
    """Decides allow, block or drop for a name and a client address."""

    def __init__(self, rules: tuple[Rule, ...]) -> None:
        by_zone: dict[Labels, list[Rule]] = {}
        for rule in rules:
            by_zone.setdefault(rule.labels, []).append(rule)
        # Longest zone first, so the most specific zone's rules judge.
        self.zones = sorted(by_zone.items(), key=lambda item: len(item[0]), reverse=True)

    def decide(self, name: Labels, ip: str) -> tuple[str, str]:
        """(action, zone of the rules that decided; "" when no zone has rules for it)."""
        for zone, rules in self.zones:
            if name[len(name) - len(zone):] == zone:
                address = ipaddress.ip_address(ip)
                for rule in rules:
                    if any(address in net for net in rule.nets):
                        return rule.action, rule.zone
                implicit = BLOCK if any(r.action == ALLOW for r in rules) else ALLOW
                return implicit, rules[0].zone
        return ALLOW, ""
