"""Prometheus metrics scraped over HTTP: CoreDNS's names and labels (ecosystem.md section 2.1),
values that match the queries sent, and skyserve's own etcd gauges."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable

import dns.message
import dns.rcode
import pytest
from prometheus_client.samples import Sample

from tests.support.dns_upstream import DnsUpstream
from tests.support.dnsutil import key
from tests.support.etcd_server import EtcdServer
from tests.support.netutil import metric_families
from tests.support.polling import wait_for
from tests.support.skyserve_proc import SkyserveProcess

pytestmark = pytest.mark.e2e

Start = Callable[..., SkyserveProcess]
Upstreams = Callable[..., DnsUpstream]
ZONE = "skydns.test."
FAST = ("--forward-timeout", "0.3", "--health-check", "0.1")

TIME_BUCKETS = [0.00025 * 2**i for i in range(16)] + [float("inf")]
SIZE_BUCKETS = [0, 100, 200, 300, 400, 511, 1023, 2047, 4095, 8291, 16e3, 32e3, 48e3, 64e3,
                float("inf")]

# Family name (as the parser reports it) -> the labels of its samples (without "le").
LABELS: dict[str, set[str]] = {
    "coredns_build_info": {"version", "revision", "goversion"},
    "coredns_panics": set(),
    "coredns_dns_requests": {"server", "zone", "view", "proto", "family", "type"},
    "coredns_dns_request_duration_seconds": {"server", "zone", "view", "type"},
    "coredns_dns_request_size_bytes": {"server", "zone", "view", "proto"},
    "coredns_dns_response_size_bytes": {"server", "zone", "view", "proto"},
    "coredns_dns_do_requests": {"server", "view", "zone"},
    "coredns_dns_responses": {"server", "zone", "view", "rcode", "plugin"},
    "coredns_plugin_enabled": {"server", "zone", "view", "name"},
    "coredns_cache_entries": {"server", "type", "zones"},
    "coredns_cache_hits": {"server", "type", "zones"},
    "coredns_cache_requests": {"server", "zones"},
    "coredns_cache_misses": {"server", "zones"},
    "coredns_cache_prefetch": {"server", "zones"},
    "coredns_cache_served_stale": {"server", "zones"},
    "coredns_cache_drops": {"server", "zones"},
    "coredns_cache_evictions": {"server", "type", "zones"},
    "coredns_proxy_request_duration_seconds": {"proxy_name", "to", "rcode"},
    "coredns_proxy_healthcheck_failures": {"proxy_name", "to", "rcode"},
    "coredns_forward_healthcheck_broken": set(),
    "coredns_forward_max_concurrent_rejects": set(),
    "coredns_forward_requests": {"to"},
    "coredns_forward_responses": {"to", "rcode"},
    "coredns_forward_request_duration_seconds": {"to", "rcode"},
    "coredns_forward_healthcheck_failures": {"to", "rcode"},
    "process_open_fds": set(),
    "process_max_fds": set(),
    "process_resident_memory_bytes": set(),
    "skyserve_etcd_revision": set(),
    "skyserve_records": set(),
    "skyserve_etcd_watch_restarts": set(),
    "skyserve_etcd_last_update_age_seconds": set(),
}
# In section 2.1 but not in the list above because they only get samples in some states.
ALSO_IN_SECTION_2_1 = ("coredns_proxy_conn_cache_hits", "coredns_proxy_conn_cache_misses",
                       "coredns_health_request_duration_seconds",
                       "coredns_health_request_failures")
DEPRECATED = ("coredns_forward_requests", "coredns_forward_responses",
              "coredns_forward_request_duration_seconds", "coredns_forward_healthcheck_failures")
RCODES = {"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN",
          "YXRRSET", "NXRRSET", "NOTAUTH", "NOTZONE", "BADVERS"}


def families(proc: SkyserveProcess) -> dict[str, list[Sample]]:
    return {f.name: f.samples for f in metric_families(proc.metrics_port)}


def exchange(proc: SkyserveProcess, wire: bytes) -> bytes:
    """Send raw query bytes over UDP and return the raw reply."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        s.sendto(wire, ("127.0.0.1", proc.dns_port))
        return s.recv(65535)


def start_full(skyserve: Start, up: DnsUpstream, *args: str) -> SkyserveProcess:
    return skyserve((ZONE,), [*FAST, "--upstream", up.address, *args])


# -- names and labels ----------------------------------------------------------------


def test_names_and_label_sets(etcd: EtcdServer, clean_prefix: str, skyserve: Start,
                              dns_upstream: Upstreams) -> None:
    up, dead = dns_upstream(), dns_upstream(mode="drop")
    up.add("www.example.com", "A", "192.0.2.1")
    etcd.put(key(clean_prefix, "a.skydns.test"), '{"host":"10.0.0.1"}')
    # The dead upstream is tried first, fails once and gets health-checked (and fails that).
    proc = skyserve((ZONE,), [*FAST, "--policy", "sequential", "--max-fails", "1",
                              "--upstream", dead.address, "--upstream", up.address])
    proc.query("a.skydns.test")
    proc.query("a.skydns.test", tcp=True, want_dnssec=True)
    proc.query("nothing.skydns.test")
    proc.query("www.example.com")
    assert wait_for(lambda: dead.probes >= 2, 3)
    time.sleep(0.35)  # the last probe's timeout
    found = families(proc)
    missing = sorted(set(LABELS) - set(found))
    assert missing == []
    for name, labels in LABELS.items():
        samples = found[name]
        assert samples, f"{name} has no samples"
        for s in samples:
            assert set(s.labels) - {"le"} == labels, (name, s.labels)
    server = f"dns://127.0.0.1:{proc.dns_port}"
    requests = found["coredns_dns_requests"]
    assert {s.name for s in requests} == {"coredns_dns_requests_total"}
    assert {(s.labels["server"], s.labels["zone"], s.labels["proto"], s.labels["family"],
             s.labels["type"]) for s in requests} == {
        (server, ZONE, "udp", "1", "A"), (server, ZONE, "tcp", "1", "A"),
        (server, ".", "udp", "1", "A")}
    responses = {(s.labels["zone"], s.labels["rcode"], s.labels["plugin"])
                 for s in found["coredns_dns_responses"]}
    assert {(ZONE, "NOERROR", "etcd"), (ZONE, "NXDOMAIN", "etcd"),
            (".", "NOERROR", "forward")} <= responses
    for name, bounds in (("coredns_dns_request_duration_seconds", TIME_BUCKETS),
                         ("coredns_dns_request_size_bytes", SIZE_BUCKETS),
                         ("coredns_dns_response_size_bytes", SIZE_BUCKETS),
                         ("coredns_proxy_request_duration_seconds", TIME_BUCKETS)):
        les = sorted({float(s.labels["le"]) for s in found[name] if s.name.endswith("_bucket")})
        assert les == bounds, name
    proxy = found["coredns_proxy_request_duration_seconds"]
    assert {(s.labels["proxy_name"], s.labels["to"], s.labels["rcode"]) for s in proxy} == {
        ("forward", up.address, "NOERROR")}
    build = found["coredns_build_info"][0]
    assert build.value == 1 and build.labels["version"] and build.labels["goversion"]
    assert found["coredns_panics"][0].name == "coredns_panics_total"
    assert found["coredns_panics"][0].value == 0
    assert found["process_open_fds"][0].value > 0


def test_every_section_2_1_family_is_exported(skyserve: Start,
                                              dns_upstream: Upstreams) -> None:
    up = dns_upstream()
    proc = start_full(skyserve, up)
    proc.query("www.example.com")
    proc.query("www.example.com", tcp=True)
    exported = set(families(proc))
    missing = [n for n in (*LABELS, *ALSO_IN_SECTION_2_1) if n not in exported]
    assert missing == [], f"not exported: {', '.join(missing)}"


def test_deprecated_forward_names_can_be_turned_off(skyserve: Start,
                                                    dns_upstream: Upstreams) -> None:
    up = dns_upstream()
    up.add("www.example.com", "A", "192.0.2.1")
    on = start_full(skyserve, up)
    off = start_full(skyserve, up, "--deprecated-forward-metrics", "false")
    for proc in (on, off):
        proc.query("www.example.com")
    with_old, without_old = families(on), families(off)
    assert [name for name in DEPRECATED if name not in with_old] == []
    assert with_old["coredns_forward_requests"][0].value == 1
    assert [name for name in DEPRECATED if name in without_old] == []
    for name in ("coredns_proxy_request_duration_seconds", "coredns_proxy_healthcheck_failures",
                 "coredns_forward_max_concurrent_rejects", "coredns_forward_healthcheck_broken"):
        assert name in without_old, name


# -- values --------------------------------------------------------------------------


def test_request_and_response_counts_match_what_was_sent(
    etcd: EtcdServer, clean_prefix: str, skyserve: Start, dns_upstream: Upstreams
) -> None:
    up = dns_upstream()
    up.add("www.example.com", "A", "192.0.2.1")
    etcd.put(key(clean_prefix, "a.skydns.test"), '{"host":"10.0.0.1"}')
    proc = start_full(skyserve, up)
    proc.query("a.skydns.test", "AAAA")  # some traffic before the baseline
    base = proc.scrape()

    def delta(name: str, **labels: str) -> float:
        wanted = set(labels.items())
        now = proc.metric(name, **labels)
        return now - sum(v for (n, ls), v in base.items() if n == name and wanted <= ls)

    for _ in range(5):
        proc.query("a.skydns.test")
    for _ in range(2):
        proc.query("a.skydns.test", tcp=True)
    for _ in range(3):
        proc.query("nothing.skydns.test", "TXT", want_dnssec=True)
    for _ in range(4):
        proc.query("www.example.com")
    assert delta("coredns_dns_requests_total", zone=ZONE, type="A", proto="udp") == 5
    assert delta("coredns_dns_requests_total", zone=ZONE, type="A", proto="tcp") == 2
    assert delta("coredns_dns_requests_total", zone=ZONE, type="TXT") == 3
    assert delta("coredns_dns_requests_total", zone=".", type="A") == 4
    assert delta("coredns_dns_do_requests_total", zone=ZONE) == 3
    assert delta("coredns_dns_responses_total", zone=ZONE, rcode="NOERROR") == 7
    assert delta("coredns_dns_responses_total", zone=ZONE, rcode="NXDOMAIN") == 3
    assert delta("coredns_dns_responses_total", zone=".", rcode="NOERROR") == 4
    assert delta("coredns_dns_request_duration_seconds_count", zone=ZONE, type="A") == 7
    assert delta("coredns_dns_response_size_bytes_count", zone=ZONE, proto="udp") == 8
    assert delta("coredns_dns_response_size_bytes_count", zone=ZONE, proto="tcp") == 2
    assert delta("coredns_dns_request_size_bytes_count", zone=".") == 4
    assert delta("coredns_proxy_request_duration_seconds_count", to=up.address) == 1
    assert delta("coredns_forward_requests_total", to=up.address) == 1


def test_size_histograms_sum_the_bytes(etcd: EtcdServer, clean_prefix: str,
                                       skyserve: Start) -> None:
    etcd.put(key(clean_prefix, "a.skydns.test"), '{"host":"10.0.0.1"}')
    proc = skyserve((ZONE,))
    query = dns.message.make_query("a.skydns.test", "A", use_edns=0).to_wire()
    reply = exchange(proc, query)
    base_q = proc.metric("coredns_dns_request_size_bytes_sum", zone=ZONE)
    base_r = proc.metric("coredns_dns_response_size_bytes_sum", zone=ZONE)
    for _ in range(5):
        assert len(exchange(proc, query)) == len(reply)
    got_q = proc.metric("coredns_dns_request_size_bytes_sum", zone=ZONE) - base_q
    got_r = proc.metric("coredns_dns_response_size_bytes_sum", zone=ZONE) - base_r
    assert (got_q, got_r) == (5 * len(query), 5 * len(reply)), (
        f"sent 5 x {len(query)} B, answered 5 x {len(reply)} B")


def test_forward_rcode_labels_are_rcodes(skyserve: Start, dns_upstream: Upstreams) -> None:
    dead = dns_upstream(mode="drop")
    proc = start_full(skyserve, dead, "--max-fails", "10")
    assert proc.query("www.example.com", timeout=3).rcode() == dns.rcode.SERVFAIL
    found = families(proc)
    assert sum(s.value for s in found["coredns_forward_requests"]) == 1
    for name in ("coredns_forward_responses", "coredns_proxy_request_duration_seconds",
                 "coredns_forward_request_duration_seconds"):
        labels = {s.labels["rcode"] for s in found.get(name, [])}
        assert labels <= RCODES, (name, labels)


def test_forward_replies_and_socket_reuse_are_counted(skyserve: Start,
                                                     dns_upstream: Upstreams) -> None:
    """Replies per upstream and rcode; a query that had to open a socket is a miss."""
    up = dns_upstream()
    names = [f"n{i}.example.com" for i in range(12)]
    for name in names:
        up.add(name, "A", "192.0.2.1")
    proc = start_full(skyserve, up)
    for name in names:
        assert proc.query(name).rcode() == dns.rcode.NOERROR
    assert proc.query("missing.example.com").rcode() == dns.rcode.NXDOMAIN
    assert proc.metric("coredns_forward_responses_total", to=up.address, rcode="NOERROR") == 12
    assert proc.metric("coredns_forward_responses_total", to=up.address, rcode="NXDOMAIN") == 1
    assert proc.metric("coredns_forward_requests_total", to=up.address) == 13
    # Eight sockets per upstream (each on its own random port) are opened as needed.
    assert proc.metric("coredns_proxy_conn_cache_misses_total", to=up.address, proto="udp") == 8
    assert proc.metric("coredns_proxy_conn_cache_hits_total", to=up.address, proto="udp") == 5


def test_cache_metrics_count_every_hit(skyserve: Start, dns_upstream: Upstreams) -> None:
    up = dns_upstream()
    up.add("www.example.com", "A", "192.0.2.1")
    proc = start_full(skyserve, up)
    for _ in range(5):
        proc.query("www.example.com")
    assert up.count("www.example.com") == 1
    assert proc.metric("coredns_dns_responses_total", zone=".", plugin="cache") == 4
    assert proc.metric("coredns_cache_misses_total") == 1
    assert proc.metric("coredns_cache_requests_total") == 5
    assert proc.metric("coredns_cache_hits_total", type="success") == 4
    assert proc.metric("coredns_cache_entries", type="success") == 1
    for _ in range(3):  # a denial's repeats: hits of the other type
        assert proc.query("gone.example.com").rcode() == dns.rcode.NXDOMAIN
    assert up.count("gone.example.com") == 1
    assert proc.metric("coredns_cache_hits_total", type="denial") == 2
    assert proc.metric("coredns_cache_hits_total", type="success") == 4


def test_skyserve_etcd_metrics(etcd: EtcdServer, clean_prefix: str, skyserve: Start) -> None:
    etcd.put(key(clean_prefix, "a.skydns.test"), '{"host":"10.0.0.1"}')
    etcd.put(key(clean_prefix, "b.skydns.test"), '{"host":"10.0.0.2"}')
    proc = skyserve((ZONE,))
    assert proc.metric("skyserve_records") == 2
    revision = etcd.put(key(clean_prefix, "c.skydns.test"), '{"host":"10.0.0.3"}')
    assert wait_for(lambda: proc.metric("skyserve_etcd_revision") == revision, 3)
    assert revision == etcd.revision()
    assert proc.metric("skyserve_records") == 3
    assert proc.metric("skyserve_etcd_watch_restarts_total") == 0
    age = proc.metric("skyserve_etcd_last_update_age_seconds")
    assert 0 <= age < 2
    time.sleep(0.5)
    assert proc.metric("skyserve_etcd_last_update_age_seconds") >= age + 0.4


def test_healthcheck_broken_counts_when_every_upstream_is_down(
    skyserve: Start, dns_upstream: Upstreams
) -> None:
    ups = [dns_upstream(mode="drop"), dns_upstream(mode="drop")]
    proc = skyserve((ZONE,), [*FAST, "--max-fails", "1",
                              *(a for u in ups for a in ("--upstream", u.address))])
    for i in range(3):  # the first marks both unhealthy; the next find none healthy
        assert proc.query(f"q{i}.example.com", timeout=3).rcode() == dns.rcode.SERVFAIL
    assert all(u.probes for u in ups)
    assert proc.metric("coredns_forward_healthcheck_broken_total") >= 1


def test_ready_gauge_follows_the_ready_endpoint(skyserve: Start) -> None:
    proc = skyserve((ZONE,), ["--lameduck", "3"])
    assert proc.is_ready() and proc.metric("skyserve_ready") == 1
    assert proc.pid is not None
    os.kill(proc.pid, signal.SIGTERM)
    assert wait_for(lambda: not proc.is_ready(), 2)  # lameduck: /ready is 503, /metrics up
    assert proc.metric("skyserve_ready") == 0


def test_upstream_failures_are_counted_by_reason(skyserve: Start,
                                                 dns_upstream: Upstreams) -> None:
    dead = dns_upstream(mode="drop")
    proc = start_full(skyserve, dead, "--max-fails", "10")
    assert proc.query("www.example.com", timeout=3).rcode() == dns.rcode.SERVFAIL
    assert proc.metric("skyserve_forward_upstream_failures_total", to=dead.address,
                       reason="timeout") == 1
