"""The defences' metrics: rate limiting, ACLs, cookies and TCP limits.

The ACL counters have CoreDNS's ``acl`` plugin names; CoreDNS has no built-in rate
limiting, cookies or TCP limits, so those are ``skyserve_*``. Part of ``metrics``' snapshot,
kept apart so each module stays about one thing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, Metric

from .stats import GuardStats

RRL = (("limited", "Responses over the rate limit (in log-only mode: that would have been)."),
       ("slipped", "Rate-limited responses sent truncated instead."),
       ("dropped", "Rate-limited responses not sent."))


def snapshot(guard: GuardStats) -> dict[str, Any]:
    return {"rrl": dict(guard.rrl), "acl": [[z, a, n] for (z, a), n in guard.acl.items()],
            "cookies": dict(guard.cookies), "tcp": dict(guard.tcp)}


def merge(a: dict[str, Any] | None, b: dict[str, Any]) -> dict[str, Any]:
    if a is None:
        return {k: (list(v) if isinstance(v, list) else dict(v)) for k, v in b.items()}
    out: dict[str, Any] = {"acl": a["acl"] + b["acl"]}
    for part in ("rrl", "cookies", "tcp"):
        out[part] = {k: a[part].get(k, 0) + b[part].get(k, 0) for k in a[part].keys() | b[part]}
    return out


def families(snap: dict[str, Any], server: str) -> Iterator[Metric]:
    for kind, text in RRL:
        counter = CounterMetricFamily(f"skyserve_rrl_{kind}_responses", text)
        counter.add_metric([], snap["rrl"].get(kind, 0))
        yield counter
    acl = {action: CounterMetricFamily(
        f"coredns_acl_{action}_requests", f"DNS requests {action} by the ACL.",
        labels=["server", "zone", "view"]) for action in ("blocked", "dropped")}
    for zone, action, n in snap["acl"]:
        acl["blocked" if action == "block" else "dropped"].add_metric([server, zone, ""], n)
    yield from acl.values()
    cookies = CounterMetricFamily("skyserve_dns_cookies", "Queries with a DNS cookie, by what "
                                  "it was: client_only, valid, fresh (a stale or foreign server "
                                  "cookie replaced), badcookie, malformed.", labels=["result"])
    for result, n in snap["cookies"].items():
        cookies.add_metric([result], n)
    yield cookies
    tcp = CounterMetricFamily("skyserve_tcp_closed_connections", "TCP connections closed by "
                              "the limits: refused_per_client, refused_total, evicted_idle, "
                              "timeouts.", labels=["reason"])
    for reason, n in snap["tcp"].items():
        tcp.add_metric([reason], n)
    yield tcp
