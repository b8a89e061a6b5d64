"""The transfer metrics: a snapshot part per process, summed over workers, and families."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..stats import XfrStats


def snapshot(xfr: XfrStats) -> dict[str, Any]:
    return {"transfers": [[*k, n] for k, n in xfr.transfers.items()],
            "notifies": [[*k, n] for k, n in xfr.notifies.items()],
            "conflicts": dict(xfr.conflicts), "skipped": dict(xfr.skipped),
            "serial_behind": xfr.serial_behind}


def merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Counters add up; the per-zone gauges are the same data in every worker: the largest."""
    return {"transfers": a["transfers"] + b["transfers"], "notifies": a["notifies"] + b["notifies"],
            "conflicts": _largest(a["conflicts"], b["conflicts"]),
            "skipped": _largest(a["skipped"], b["skipped"]),
            "serial_behind": a["serial_behind"] + b["serial_behind"]}


def _largest(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {k: max(a.get(k, 0), b.get(k, 0)) for k in a.keys() | b.keys()}


def families(snap: dict[str, Any]) -> Iterator[Metric]:
    transfers = CounterMetricFamily(
        "skyserve_xfr_transfers", "Zone transfer requests by zone, type and result (axfr, "
        "ixfr, uptodate, udp, refused, notauth, badkey, badsig, badtime, servfail, aborted).",
        labels=["zone", "type", "result"])
    yield _summed(transfers, snap["transfers"])
    notifies = CounterMetricFamily(
        "skyserve_xfr_notifies", "NOTIFY messages by zone, secondary and outcome: sent (each "
        "transmission), the rcode of an answer, or failed (no answer after every retry).",
        labels=["zone", "to", "outcome"])
    yield _summed(notifies, snap["notifies"])
    for name, key, text in (
        ("skyserve_xfr_cname_conflicts", "conflicts",
         "Names whose CNAME is left out of the transferred zone for other data beside it."),
        ("skyserve_xfr_skipped_names", "skipped",
         "Names left out of the transferred zone: query-time patterns (any, inner *)."),
    ):
        gauge = GaugeMetricFamily(name, text, labels=["zone"])
        for zone, n in snap[key].items():
            gauge.add_metric([zone], n)
        yield gauge
    behind = CounterMetricFamily("skyserve_xfr_serial_behind", "Transfer requests from a "
                                 "secondary whose serial is newer than ours.")
    behind.add_metric([], snap["serial_behind"])
    yield behind


def _summed(family: CounterMetricFamily, rows: list[list[Any]]) -> CounterMetricFamily:
    totals: dict[tuple[str, ...], int] = {}
    for row in rows:
        key = tuple(row[:-1])
        totals[key] = totals.get(key, 0) + row[-1]
    for key, n in totals.items():
        family.add_metric(list(key), n)
    return family
