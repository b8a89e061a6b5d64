"""The bridge's Prometheus metrics, in a private registry (nothing global, so tests and
several bridges in one process never collide)."""

from __future__ import annotations

import platform
from collections.abc import Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.process_collector import ProcessCollector

# From 1 ms to about 16 s, doubling (CoreDNS uses the same shape for its durations).
BUCKETS = tuple(0.001 * 2**i for i in range(15))
RECORD_KINDS = ("a", "aaaa", "cname", "srv", "ptr", "txt", "pod")


class Metrics:
    def __init__(self, version: str = "") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        r = self.registry
        self.build_info = Gauge(
            "kube2etcd_build_info", "Build information (always 1).",
            ["version", "pythonversion"], registry=r,
        )
        self.build_info.labels(version or "dev", platform.python_version()).set(1)
        self.programming = Histogram(
            "kube2etcd_dns_programming_duration_seconds",
            "Time from a Kubernetes object change being seen to its records written to etcd.",
            buckets=BUCKETS, registry=r,
        )
        self.records = Gauge(
            "kube2etcd_records", "Records the bridge holds in etcd, by kind.", ["kind"],
            registry=r,
        )
        for kind in RECORD_KINDS:
            self.records.labels(kind).set(0)
        self.etcd_ops = Counter(
            "kube2etcd_etcd_operations_total",
            "etcd operations by kind (put, delete, load, txn, probe, lease) and result "
            "(ok, conflict, error).", ["op", "result"], registry=r,
        )
        self.reconcile_duration = Histogram(
            "kube2etcd_reconcile_duration_seconds",
            "Duration of one reconcile pass (mode: full reads etcd back, incremental does not).",
            ["mode"], buckets=BUCKETS, registry=r,
        )
        self.changes = Counter(
            "kube2etcd_reconcile_changes_total", "Keys written (put) or removed (delete).",
            ["op"], registry=r,
        )
        self.watch_restarts = Counter(
            "kube2etcd_watch_restarts_total",
            "List/watch restarts by resource (errors, and 410 Gone relists).", ["resource"],
            registry=r,
        )
        self.last_sync = Gauge(
            "kube2etcd_last_sync_timestamp_seconds",
            "Unix time of the last successful write of the desired state to etcd.",
            registry=r,
        )
        self.foreign_skipped = Counter(
            "kube2etcd_foreign_keys_skipped_total",
            "Keys the bridge wanted to write but found held by another writer, and left "
            "alone (counted when found so, once per key until it is freed).", registry=r,
        )
        self.foreign = Gauge(
            "kube2etcd_foreign_keys",
            "Keys the bridge wants that another writer holds (as of the last full pass).",
            registry=r,
        )
        self.state_lost = Counter(
            "kube2etcd_etcd_state_lost_total",
            "Times etcd was found to have lost or rolled back the bridge's records, each "
            "followed by a full rewrite (reason: cluster = another cluster answers, "
            "revision = the revision went backwards, missing = a record the bridge wrote "
            "is gone).", ["reason"], registry=r,
        )
        for reason in ("cluster", "revision", "missing"):
            self.state_lost.labels(reason)
        self.leader = Gauge(
            "kube2etcd_leader", "1 while this bridge is the elected writer.", registry=r,
        )
        self.leader_transitions = Counter(
            "kube2etcd_leader_transitions_total",
            "Times this bridge became or stopped being the elected writer.", registry=r,
        )
        self.synced = Gauge(
            "kube2etcd_synced",
            "1 once a full pass has written the desired state to etcd (the readiness "
            "condition of a leader).", registry=r,
        )
        for result in ("ok", "error"):
            self.etcd_ops.labels("lease", result)

    def watching(self, resources: list[str]) -> None:
        """Give each watched resource its restart series at 0, so rates start at once."""
        for resource in resources:
            self.watch_restarts.labels(resource)

    def set_records(self, counts: Mapping[str, int]) -> None:
        for kind in RECORD_KINDS:
            self.records.labels(kind).set(counts.get(kind, 0))

    def render(self) -> tuple[int, str, bytes]:
        """The /metrics response for skyserve's HTTP server."""
        return 200, CONTENT_TYPE_LATEST, generate_latest(self.registry)
