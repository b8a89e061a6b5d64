"""What the CoreDNS dashboards and alerts in common use read from a CoreDNS /metrics: every
metric name and the labels their expressions group, filter or template by.

Written down from their public definitions (not copied):
* the coredns-mixin (github.com/povilasv/coredns-mixin, also vendored by kube-prometheus):
  alerts CoreDNSDown, CoreDNSLatencyHigh, CoreDNSErrorsHigh, CoreDNSForwardLatencyHigh,
  CoreDNSForwardErrorsHigh, CoreDNSForwardHealthcheckFailureCount,
  CoreDNSForwardHealthcheckBrokenCount, and its "CoreDNS" dashboard;
* the "CoreDNS" dashboard of kube-prometheus-stack (grafana.com 12539, "for 1.7.0+"), whose
  panels ask for the pre-1.7 names first and fall back (`or`) to the current ones; the current
  ones are listed.
Not listed, because no CoreDNS-compatible Python server can have them: the mixin's
`go_goroutines` panel (Go runtime) and its `coredns_kubernetes_dns_programming_duration_seconds`
panel, shown only with its kubernetesPlugin option (skyserve has no kubernetes plugin; the
bridge's kube2etcd_dns_programming_duration_seconds is the same measurement). Target labels
(job, instance, pod, cluster) come from Prometheus, not from /metrics.
"""

from __future__ import annotations

# metric sample name -> label names the expressions use (le on histogram buckets included).
MIXIN_ALERTS: dict[str, frozenset[str]] = {
    # CoreDNSLatencyHigh: p99 by server and zone.
    "coredns_dns_request_duration_seconds_bucket": frozenset({"server", "zone", "le"}),
    # CoreDNSErrorsHigh: SERVFAIL share; sums away server, zone, view, rcode, plugin.
    "coredns_dns_responses_total": frozenset({"server", "zone", "view", "rcode", "plugin"}),
    # CoreDNSForwardLatencyHigh / CoreDNSForwardErrorsHigh: per upstream `to`, by rcode.
    "coredns_forward_request_duration_seconds_bucket": frozenset({"to", "rcode", "le"}),
    "coredns_forward_responses_total": frozenset({"to", "rcode"}),
    # CoreDNSForwardHealthcheckFailureCount / ...BrokenCount.
    "coredns_forward_healthcheck_failures_total": frozenset({"to"}),
    "coredns_forward_healthcheck_broken_total": frozenset(),
}

MIXIN_DASHBOARD: dict[str, frozenset[str]] = {
    "coredns_panics_total": frozenset(),
    "coredns_dns_responses_total": frozenset({"rcode"}),
    "coredns_forward_responses_total": frozenset({"rcode"}),
    "coredns_dns_request_duration_seconds_bucket": frozenset({"server", "zone", "le"}),
    "coredns_forward_request_duration_seconds_bucket": frozenset({"to", "le"}),
    "coredns_dns_requests_total": frozenset({"type", "zone"}),
    "coredns_forward_requests_total": frozenset({"to"}),
    "coredns_plugin_enabled": frozenset({"name"}),
    "coredns_dns_request_size_bytes_bucket": frozenset({"server", "zone", "proto", "le"}),
    "coredns_dns_response_size_bytes_bucket": frozenset({"server", "zone", "proto", "le"}),
    "coredns_cache_hits_total": frozenset({"type"}),
    "coredns_cache_misses_total": frozenset(),
    "coredns_cache_entries": frozenset({"type"}),
    "process_resident_memory_bytes": frozenset(),
    "process_cpu_seconds_total": frozenset(),
    "coredns_build_info": frozenset(),  # the instance template variable
}

KUBE_PROMETHEUS_STACK_DASHBOARD: dict[str, frozenset[str]] = {
    "coredns_dns_requests_total": frozenset({"proto", "type", "zone"}),
    "coredns_dns_do_requests_total": frozenset(),
    "coredns_dns_request_size_bytes_bucket": frozenset({"proto", "le"}),
    "coredns_dns_responses_total": frozenset({"rcode"}),
    "coredns_dns_request_duration_seconds_bucket": frozenset({"le"}),
    "coredns_dns_response_size_bytes_bucket": frozenset({"proto", "le"}),
    "coredns_cache_entries": frozenset({"type"}),
    "coredns_cache_hits_total": frozenset({"type"}),
    "coredns_cache_misses_total": frozenset(),
}

# Label values the expressions match on: (sample name, label) -> values that must be present.
# Both dashboards split sizes by proto="udp" and proto="tcp"; the error alerts match
# rcode="SERVFAIL".
VALUES: dict[tuple[str, str], frozenset[str]] = {
    ("coredns_dns_request_size_bytes_bucket", "proto"): frozenset({"udp", "tcp"}),
    ("coredns_dns_response_size_bytes_bucket", "proto"): frozenset({"udp", "tcp"}),
    ("coredns_dns_responses_total", "rcode"): frozenset({"SERVFAIL"}),
    ("coredns_forward_responses_total", "rcode"): frozenset({"SERVFAIL"}),
    ("coredns_forward_request_duration_seconds_bucket", "rcode"): frozenset({"SERVFAIL"}),
}

SOURCES = {"coredns-mixin alerts": MIXIN_ALERTS, "coredns-mixin dashboard": MIXIN_DASHBOARD,
           "kube-prometheus-stack CoreDNS dashboard": KUBE_PROMETHEUS_STACK_DASHBOARD}
