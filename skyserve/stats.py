"""Every number skyserve exports, in one object the serving code writes plain numbers into.

The query path, the forwarder, its cache, the etcd mirror and the /health self-check each
write into their part of one ``Stats``; nothing here runs code per query. ``metrics``
renders a ``Stats`` and depends on nothing else. A reload builds new stages around the
same ``Stats``, so counters carry on without being copied.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from .tally import DURATION_BUCKETS, Tally


@dataclass(slots=True)
class EtcdState:
    """What the mirror and the served index report."""

    revision: int = 0  # the etcd revision being served
    records: int = 0  # valid records in the served index
    invalid: int = 0  # values skipped because they are not valid records
    loads: int = 0
    watch_restarts: int = 0
    last_update: float = 0.0  # time.time() of the last load or change applied
    connected: bool = False
    last_error: str = ""


@dataclass(slots=True)
class ForwardStats:
    # max_concurrent_rejects, healthcheck_broken, healthcheck_failures, upstream_failures,
    # unexpected_replies
    counters: Counter[str] = field(default_factory=Counter)
    requests_to: Counter[str] = field(default_factory=Counter)  # to -> queries sent
    healthcheck_failures: Counter[str] = field(default_factory=Counter)  # to -> failed probes
    # (to, reason) -> queries an upstream failed: timeout, network, malformed (a reply
    # that parsed but did not match); SERVFAIL and REFUSED are replies, counted by rcode
    failures: Counter[tuple[str, str]] = field(default_factory=Counter)
    # (to, proto) -> queries that needed a new socket; every other UDP query reused one
    conn_misses: Counter[tuple[str, str]] = field(default_factory=Counter)
    # (to, rcode) -> replies per duration bucket (last: above all), then the sum of seconds
    durations: dict[tuple[str, str], list[float]] = field(default_factory=dict)

    def buckets(self, to: str, rcode: str) -> list[float]:
        found = self.durations.get((to, rcode))
        if found is None:
            found = self.durations[(to, rcode)] = [0] * (len(DURATION_BUCKETS) + 2)
        return found


@dataclass(slots=True)
class CacheStats:
    """The forward cache: requests, hits_success/denial, misses, evictions_success/denial,
    prefetch, served_stale; and its current entries per kind."""

    counters: Counter[str] = field(default_factory=Counter)
    entries: dict[str, int] = field(default_factory=lambda: {"success": 0, "denial": 0})


@dataclass(slots=True)
class HealthStats:
    """The /health self-check, as CoreDNS's health plugin measures it."""

    buckets: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BUCKETS) + 1))
    seconds: float = 0.0
    failures: int = 0


@dataclass(slots=True)
class GuardStats:
    """The internet-facing defences: rate limiting, ACLs, cookies and TCP limits."""

    # limited, slipped, dropped (in log-only mode: what would have been)
    rrl: Counter[str] = field(default_factory=Counter)
    acl: Counter[tuple[str, str]] = field(default_factory=Counter)  # (zone, action) -> queries
    # client_only, valid, fresh (a stale or foreign server cookie replaced), badcookie, malformed
    cookies: Counter[str] = field(default_factory=Counter)
    # refused_total, refused_per_client, evicted_idle, timeouts
    tcp: Counter[str] = field(default_factory=Counter)


@dataclass(slots=True)
class XfrStats:
    """Zone transfers (``xfr``): transfers served and NOTIFYs, and what a zone leaves out."""

    transfers: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # zone, type, result
    notifies: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # zone, to, outcome
    conflicts: dict[str, int] = field(default_factory=dict)  # zone -> CNAME-beside-data names
    skipped: dict[str, int] = field(default_factory=dict)  # zone -> names not expressible
    serial_behind: int = 0  # secondaries whose serial was newer than ours


@dataclass(slots=True)
class Stats:
    tally: Tally = field(default_factory=Tally)  # every reply, by its Stat
    queries: Counter[str] = field(default_factory=Counter)  # dropped, formerr
    panics: int = 0  # handler exceptions, each answered SERVFAIL
    forward: ForwardStats = field(default_factory=ForwardStats)
    cache: CacheStats = field(default_factory=CacheStats)
    health: HealthStats = field(default_factory=HealthStats)
    etcd: EtcdState = field(default_factory=EtcdState)
    ready: bool = False  # /ready answers 200 (written by the app before each scrape)
    guard: GuardStats = field(default_factory=GuardStats)
    xfr: XfrStats = field(default_factory=XfrStats)
    forwarding: bool = False  # whether the forward and cache plugins are enabled
    caching: bool = False

    @property
    def answer_hits(self) -> int:
        """Replies served from the answer cache (counted in ``tally`` under ids of their
        own: ``Tally.hit_id``)."""
        return self.tally.hits()
