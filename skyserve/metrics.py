"""Prometheus metrics with CoreDNS's names and labels, plus skyserve's own.

The serving path only writes plain numbers into one ``stats.Stats``. ``snapshot`` gathers
them into a JSON-able dict; ``families`` turns one snapshot, or the sum of several
(one per ``--workers`` process), into metric families at scrape time. Nothing here runs per
query.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from . import __version__, guardmetrics
from .stats import ForwardStats, Stats
from .tally import DENIED, DURATION_BUCKETS, FORWARDED, SIZE_BUCKETS, Stat, size_bucket
from .xfr import metrics as xfr

Snapshot = dict[str, Any]


def snapshot(stats: Stats, server: str, zones: list[str]) -> Snapshot:
    """Everything the metrics need from one serving process, as plain data."""
    cache_stats = None
    if stats.caching:
        # Repeats within a second are answered from the answer cache with the same reply:
        # they are cache hits too, so count them as such.
        success, denial = stats.tally.hits(FORWARDED), stats.tally.hits(DENIED)
        cache_stats = _add(dict(stats.cache.counters), {"requests": success + denial,
                                                        "hits_success": success,
                                                        "hits_denial": denial})
        cache_stats |= {f"entries_{k}": v for k, v in stats.cache.entries.items()}
    fwd, etcd, health = stats.forward, stats.etcd, stats.health
    return {
        "server": server,
        "zones": zones,
        "tally": stats.tally.rows(),
        "panics": stats.panics,
        "ready": stats.ready,
        "guard": guardmetrics.snapshot(stats.guard),
        "health": {"buckets": list(health.buckets), "sum": health.seconds,
                   "failures": health.failures},
        "cache": cache_stats,
        "forward": {
            "stats": dict(fwd.counters),
            "requests": [[to, n] for to, n in fwd.requests_to.items()],
            "replies": [[to, rcode, sum(b[:-1])] for (to, rcode), b in fwd.durations.items()],
            "durations": [[to, rcode, b] for (to, rcode), b in fwd.durations.items()],
            "healthcheck_failures": [[to, n] for to, n in fwd.healthcheck_failures.items()],
            "failures": [[to, why, n] for (to, why), n in fwd.failures.items()],
            "conn_cache": _conn_cache(fwd),
        } if stats.forwarding else None,
        "etcd": {
            "revision": etcd.revision,
            "records": etcd.records,
            "invalid": etcd.invalid,
            "watch_restarts": etcd.watch_restarts,
            "loads": etcd.loads,
            "last_update": etcd.last_update,
            "connected": etcd.connected,
        },
        "xfr": xfr.snapshot(stats.xfr),
    }


def _conn_cache(fwd: ForwardStats) -> list[list[Any]]:
    """[to, proto, hit|miss, n]: a UDP query that needed no new socket was a hit."""
    misses = fwd.conn_misses
    rows: list[list[Any]] = [[to, proto, "miss", n] for (to, proto), n in misses.items()]
    for to, n in fwd.requests_to.items():
        hits = n - misses[(to, "udp")] - misses[(to, "tcp")]
        if hits > 0:
            rows.append([to, "udp", "hit", hits])
    return rows


def merge(snapshots: list[Snapshot]) -> Snapshot:
    """Sum the counters of several worker processes (gauges: the freshest / largest)."""
    first = snapshots[0]
    out: Snapshot = {"server": first["server"], "zones": first["zones"], "tally": [],
                     "panics": 0, "ready": all(s["ready"] for s in snapshots), "cache": None,
                     "forward": None, "etcd": dict(first["etcd"]), "health": first["health"],
                     "guard": None, "xfr": first["xfr"]}
    for snap in snapshots:
        out["tally"].extend(snap["tally"])
        out["panics"] += snap["panics"]
        out["guard"] = guardmetrics.merge(out["guard"], snap["guard"])
        if snap["cache"] is not None:
            out["cache"] = _add(out["cache"] or {}, snap["cache"])
        if snap["forward"] is not None:
            fwd = out["forward"] or {"stats": {}}
            fwd["stats"] = _add(fwd["stats"], snap["forward"]["stats"])
            for part in ("requests", "replies", "durations", "healthcheck_failures",
                         "failures", "conn_cache"):
                fwd[part] = fwd.get(part, []) + snap["forward"][part]
            out["forward"] = fwd
        etcd = out["etcd"]
        for k in ("revision", "records", "last_update"):
            etcd[k] = max(etcd[k], snap["etcd"][k])
        etcd["invalid"] = max(etcd["invalid"], snap["etcd"]["invalid"])
        etcd["watch_restarts"] += snap["etcd"]["watch_restarts"] if snap is not first else 0
        etcd["connected"] = etcd["connected"] and snap["etcd"]["connected"]
        if snap is not first:
            out["xfr"] = xfr.merge(out["xfr"], snap["xfr"])
    return out


def _add(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {k: a.get(k, 0) + b.get(k, 0) for k in a.keys() | b.keys()}


def families(snap: Snapshot, deprecated_forward: bool = True) -> Iterator[Metric]:
    server = snap["server"]
    yield from _dns(snap["tally"], server)
    panics = CounterMetricFamily("coredns_panics", "Panics (unhandled exceptions) in a handler.")
    panics.add_metric([], snap["panics"])
    yield panics
    ready = GaugeMetricFamily("skyserve_ready", "1 while /ready answers 200.")
    ready.add_metric([], int(snap["ready"]))
    yield ready
    build = GaugeMetricFamily("coredns_build_info", "Build information.",
                              labels=["version", "revision", "goversion"])
    build.add_metric([__version__, "skyserve", f"python{platform.python_version()}"], 1)
    yield build
    enabled = GaugeMetricFamily("coredns_plugin_enabled", "Enabled plugins per zone.",
                                labels=["server", "zone", "view", "name"])
    for zone in snap["zones"]:
        enabled.add_metric([server, zone, "", "etcd"], 1)
    if snap["forward"] is not None:
        enabled.add_metric([server, ".", "", "forward"], 1)
    if snap["cache"] is not None:
        enabled.add_metric([server, ".", "", "cache"], 1)
    yield enabled
    if snap.get("health") is not None:
        yield from _health(snap["health"])
    if snap["cache"] is not None:
        yield from _cache(snap["cache"], server)
    if snap["forward"] is not None:
        yield from _forward(snap["forward"], deprecated_forward)
    yield from _etcd(snap["etcd"])
    yield from guardmetrics.families(snap["guard"], server)
    yield from xfr.families(snap["xfr"])


def _dns(tally: list[list[Any]], server: str) -> Iterator[Metric]:
    requests = CounterMetricFamily(
        "coredns_dns_requests", "Counter of DNS requests made per zone, protocol and family.",
        labels=["server", "zone", "view", "proto", "family", "type"])
    do = CounterMetricFamily("coredns_dns_do_requests", "Counter of DNS requests with DO bit set.",
                             labels=["server", "view", "zone"])
    responses = CounterMetricFamily(
        "coredns_dns_responses", "Counter of response status codes.",
        labels=["server", "zone", "view", "rcode", "plugin"])
    counts: dict[str, dict[tuple[str, ...], int]] = {k: {} for k in ("req", "do", "resp")}
    hists: dict[str, dict[tuple[str, ...], Hist]] = {k: {} for k in ("dur", "qsz", "rsz")}
    for row in tally:
        stat, n, seconds = Stat(*row[:-2]), row[-2], row[-1]
        _inc(counts["req"], (server, stat.zone, "", stat.proto, "1", stat.qtype), n)
        if stat.do:
            _inc(counts["do"], (server, "", stat.zone), n)
        _inc(counts["resp"], (server, stat.zone, "", stat.rcode, stat.plugin), n)
        _observe(hists["dur"], (server, stat.zone, "", stat.qtype), stat.duration_bucket, n,
                 seconds, len(DURATION_BUCKETS))
        _observe(hists["qsz"], (server, stat.zone, "", stat.proto),
                 size_bucket(stat.request_size), n, n * stat.request_size, len(SIZE_BUCKETS))
        _observe(hists["rsz"], (server, stat.zone, "", stat.proto),
                 size_bucket(stat.response_size), n, n * stat.response_size, len(SIZE_BUCKETS))
    for family, key in ((requests, "req"), (do, "do"), (responses, "resp")):
        for labels, n in counts[key].items():
            family.add_metric(list(labels), n)
        yield family
    yield _histogram("coredns_dns_request_duration_seconds",
                     "Histogram of the time (in seconds) each request took.",
                     ["server", "zone", "view", "type"], hists["dur"], DURATION_BUCKETS)
    yield _histogram("coredns_dns_request_size_bytes", "Size of the EDNS0 UDP buffer in bytes.",
                     ["server", "zone", "view", "proto"], hists["qsz"], SIZE_BUCKETS)
    yield _histogram("coredns_dns_response_size_bytes", "Size of the returned response in bytes.",
                     ["server", "zone", "view", "proto"], hists["rsz"], SIZE_BUCKETS)


def _health(health: dict[str, Any]) -> Iterator[Metric]:
    table: dict[tuple[str, ...], Hist] = {(): Hist(health["buckets"], health["sum"])}
    yield _histogram("coredns_health_request_duration_seconds",
                     "Histogram of the time (in seconds) each self-check of /health took.", [],
                     table, DURATION_BUCKETS)
    failures = CounterMetricFamily("coredns_health_request_failures",
                                   "The number of failed self-checks of /health.")
    failures.add_metric([], health["failures"])
    yield failures


def _cache(stats: dict[str, int], server: str) -> Iterator[Metric]:
    labels = [server, "."]
    entries = GaugeMetricFamily("coredns_cache_entries", "The number of elements in the cache.",
                                labels=["server", "type", "zones"])
    hits = CounterMetricFamily("coredns_cache_hits", "The count of cache hits.",
                               labels=["server", "type", "zones"])
    evictions = CounterMetricFamily("coredns_cache_evictions", "The count of cache evictions.",
                                    labels=["server", "type", "zones"])
    for kind in ("success", "denial"):
        entries.add_metric([server, kind, "."], stats.get(f"entries_{kind}", 0))
        hits.add_metric([server, kind, "."], stats.get(f"hits_{kind}", 0))
        evictions.add_metric([server, kind, "."], stats.get(f"evictions_{kind}", 0))
    yield from (entries, hits, evictions)
    for name, key, text in (
        ("coredns_cache_requests", "requests", "The count of cache requests."),
        ("coredns_cache_misses", "misses", "The count of cache misses (deprecated)."),
        ("coredns_cache_prefetch", "prefetch", "The number of times the cache has prefetched."),
        ("coredns_cache_served_stale", "served_stale", "The number of requests served stale."),
        ("coredns_cache_drops", "drops", "Responses not cached because they did not match."),
    ):
        family = CounterMetricFamily(name, text, labels=["server", "zones"])
        family.add_metric(labels, stats.get(key, 0))
        yield family


def _forward(fwd: dict[str, Any], deprecated: bool) -> Iterator[Metric]:
    hist: dict[tuple[str, ...], Hist] = {}
    for to, rcode, buckets in fwd["durations"]:
        acc = hist.setdefault(("forward", to, rcode), Hist([0] * len(buckets), 0.0))
        for i, n in enumerate(buckets[:-1]):
            acc.counts[i] += n
        acc.total += buckets[-1]
    yield _histogram("coredns_proxy_request_duration_seconds",
                     "Histogram of the time each request took.", ["proxy_name", "to", "rcode"],
                     hist, DURATION_BUCKETS)
    failures = _summed(fwd["healthcheck_failures"])
    health = CounterMetricFamily("coredns_proxy_healthcheck_failures",
                                 "Count of failed health checks per upstream.",
                                 labels=["proxy_name", "to", "rcode"])
    for (to,), n in failures.items():
        health.add_metric(["forward", to, ""], n)
    yield health
    conns = {"hit": CounterMetricFamily("coredns_proxy_conn_cache_hits",
                                        "Queries sent on an already open upstream socket.",
                                        labels=["proxy_name", "to", "proto"]),
             "miss": CounterMetricFamily("coredns_proxy_conn_cache_misses",
                                         "Queries that needed a new upstream socket.",
                                         labels=["proxy_name", "to", "proto"])}
    for (to, proto, kind), n in _summed(fwd["conn_cache"]).items():
        conns[kind].add_metric(["forward", to, proto], n)
    yield from conns.values()
    failed = CounterMetricFamily(
        "skyserve_forward_upstream_failures",
        "Queries an upstream failed, by reason: timeout, network, malformed (SERVFAIL and "
        "REFUSED are replies: see coredns_proxy_request_duration_seconds).",
        labels=["to", "reason"])
    for labels, n in _summed(fwd["failures"]).items():
        failed.add_metric(list(labels), n)
    yield failed
    stats = fwd["stats"]
    for name, key, text in (
        ("coredns_forward_max_concurrent_rejects", "max_concurrent_rejects",
         "Queries refused because the concurrent query limit was reached."),
        ("coredns_forward_healthcheck_broken", "healthcheck_broken",
         "Times all upstreams were unhealthy at once."),
    ):
        family = CounterMetricFamily(name, text)
        family.add_metric([], stats.get(key, 0))
        yield family
    if not deprecated:
        return
    requests = CounterMetricFamily("coredns_forward_requests",
                                   "Counter of requests made per upstream (deprecated).",
                                   labels=["to"])
    for labels, n in _summed(fwd["requests"]).items():
        requests.add_metric(list(labels), n)
    yield requests
    responses = CounterMetricFamily("coredns_forward_responses",
                                    "Counter of responses per upstream and rcode (deprecated).",
                                    labels=["to", "rcode"])
    for labels, n in _summed(fwd["replies"]).items():
        responses.add_metric(list(labels), n)
    yield responses
    yield _histogram("coredns_forward_request_duration_seconds",
                     "Histogram of the time each request took (deprecated).", ["to", "rcode"],
                     {k[1:]: v for k, v in hist.items()}, DURATION_BUCKETS)
    old_health = CounterMetricFamily("coredns_forward_healthcheck_failures",
                                     "Count of failed health checks per upstream (deprecated).",
                                     labels=["to", "rcode"])
    for (to,), n in failures.items():
        old_health.add_metric([to, ""], n)
    yield old_health


def _etcd(etcd: dict[str, Any]) -> Iterator[Metric]:
    gauges = (
        ("skyserve_etcd_revision", "The etcd revision being served.", etcd["revision"]),
        ("skyserve_records", "Valid records loaded from etcd.", etcd["records"]),
        ("skyserve_invalid_records", "etcd values skipped because they are not valid records.",
         etcd["invalid"]),
        ("skyserve_etcd_connected", "1 while the etcd watch is established.",
         int(etcd["connected"])),
        ("skyserve_etcd_last_update_age_seconds",
         "Seconds since the last load or change from etcd was applied.",
         time.time() - etcd["last_update"] if etcd["last_update"] else -1),
    )
    for name, text, value in gauges:
        family = GaugeMetricFamily(name, text)
        family.add_metric([], value)
        yield family
    for name, text, value in (
        ("skyserve_etcd_watch_restarts", "Times the etcd watch was re-established.",
         etcd["watch_restarts"]),
        ("skyserve_etcd_loads", "Full loads of the etcd prefix.", etcd["loads"]),
    ):
        counter = CounterMetricFamily(name, text)
        counter.add_metric([], value)
        yield counter


def _summed(rows: Iterable[list[Any]]) -> dict[tuple[Any, ...], int]:
    """Rows of labels then a count (several workers may report the same labels), summed."""
    out: dict[tuple[Any, ...], int] = {}
    for *labels, n in rows:
        key = tuple(labels)
        out[key] = out.get(key, 0) + n
    return out


def _inc(table: dict[tuple[str, ...], int], key: tuple[str, ...], n: int) -> None:
    table[key] = table.get(key, 0) + n


class Hist:
    """Per-bucket counts (the last one: above every bound) and the exact sum."""

    __slots__ = ("counts", "total")

    def __init__(self, counts: list[int], total: float) -> None:
        self.counts = counts
        self.total = total


def _observe(table: dict[tuple[str, ...], Hist], key: tuple[str, ...], index: int, n: int,
             total: float, size: int) -> None:
    hist = table.get(key)
    if hist is None:
        hist = table[key] = Hist([0] * (size + 1), 0.0)
    hist.counts[index] += n
    hist.total += total


def _histogram(name: str, text: str, labels: list[str], table: dict[tuple[str, ...], Hist],
               bounds: Iterable[float]) -> HistogramMetricFamily:
    bounds = list(bounds)
    family = HistogramMetricFamily(name, text, labels=labels)
    for key, hist in table.items():
        running, buckets = 0, []
        for bound, n in zip(bounds, hist.counts, strict=False):
            running += n
            buckets.append((_fmt(bound), running))
        running += hist.counts[len(bounds)]
        buckets.append(("+Inf", running))
        family.add_metric(list(key), buckets, sum_value=hist.total)
    return family


def _fmt(bound: float) -> str:
    return repr(float(bound))


class SnapshotCollector(Collector):
    def __init__(self, source: Any, deprecated_forward: bool = True) -> None:
        self.source = source  # callable returning a Snapshot
        self.deprecated_forward = deprecated_forward

    def collect(self) -> Iterator[Metric]:
        return families(self.source(), self.deprecated_forward)


def registry(source: Any, deprecated_forward: bool = True) -> CollectorRegistry:
    """A registry with our families and the standard process_* collector."""
    from prometheus_client import ProcessCollector

    reg = CollectorRegistry()
    reg.register(SnapshotCollector(source, deprecated_forward))
    ProcessCollector(registry=reg)
    return reg


def render(reg: CollectorRegistry) -> bytes:
    return generate_latest(reg)
