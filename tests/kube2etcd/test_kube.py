"""objects.py (slim objects from API JSON) and kube.py (list/watch against the fake API)."""

from __future__ import annotations

import gc
import queue
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kube2etcd.kube import Watcher, WatchSettings, api_client, sources
from kube2etcd.objects import (
    ENDPOINT_SLICES,
    PODS,
    SERVICES,
    Changed,
    Event,
    Listed,
    Source,
    slim_endpoints,
    slim_pod,
    slim_service,
    slim_slice,
)
from kube2etcd.records import CLUSTER_IP, EXTERNAL_NAME, HEADLESS, Endpoint, Port
from kubefake import FakeKubeAPI, endpoint_slice, endpoints, pod, service
from tests.support.kubeconfig import write_kubeconfig


def test_slim_services() -> None:
    s = slim_service(service("ns", "a", ["10.0.0.1", "fd00::1"], ports=[
        {"name": "http", "port": 80}, {"port": 81, "protocol": "UDP"}]))
    assert s is not None and s.kind == CLUSTER_IP and s.cluster_ips == ("10.0.0.1", "fd00::1")
    assert s.ports == (Port("http", 80, "TCP"), Port("", 81, "UDP"))
    h = slim_service(service("ns", "h", headless=True, publish_not_ready=True))
    assert h is not None and h.kind == HEADLESS and h.publish_not_ready
    e = slim_service(service("ns", "e", type="ExternalName", external_name="x.example."))
    assert e is not None and e.kind == EXTERNAL_NAME and e.external_name == "x.example."
    c = slim_service(service("ns", "c", ["10.0.0.3"], publish_not_ready=True))
    assert c is not None and c.kind == CLUSTER_IP and c.publish_not_ready  # endpoint PTRs
    pending = slim_service(service("ns", "p"))
    assert pending is not None and pending.cluster_ips == ()


def test_slim_endpoints() -> None:
    sl = endpoint_slice("ns", "a-1", "a", endpoints=[
        "10.0.0.1", {"addresses": ["10.0.0.2"], "hostname": "h", "conditions": {"ready": False}}])
    del sl["endpoints"][0]["conditions"]["ready"]  # a missing "ready" counts as ready
    s = slim_slice(sl)
    assert s is not None and s.service == "a"
    assert s.groups[0].endpoints == (Endpoint(("10.0.0.1",)), Endpoint(("10.0.0.2",), "h", False))
    fqdn = endpoint_slice("ns", "a-2", "a", address_type="FQDN", endpoints=["x.example"])
    assert slim_slice(fqdn) is None
    orphan = endpoint_slice("ns", "a-3", "a")
    del orphan["metadata"]["labels"]["kubernetes.io/service-name"]
    assert slim_slice(orphan) is None
    ep = slim_endpoints(endpoints("ns", "b", [{"addresses": ["10.0.0.3"],
                                               "notReadyAddresses": ["10.0.0.4"],
                                               "ports": [{"name": "p", "port": 1}]}]))
    assert ep is not None and ep.service == "b"
    assert [e.ready for e in ep.groups[0].endpoints] == [True, False]


def test_slim_pods() -> None:
    p = slim_pod(pod("ns", "p", None, ips=["10.1.0.1", "fd00::1"]))
    assert p is not None and p.ips == ("10.1.0.1", "fd00::1")
    assert slim_pod(pod("ns", "p", "10.1.0.1", phase="Pending")) is None
    assert slim_pod(pod("ns", "p", None)) is None


def test_sources() -> None:
    assert sources((), "endpointslices", False) == [Source(SERVICES), Source(ENDPOINT_SLICES)]
    got = sources(("a", "b"), "endpoints", True)
    assert len(got) == 6 and Source(PODS, "b") in got


@pytest.fixture
def kube() -> Iterator[FakeKubeAPI]:
    with FakeKubeAPI(bookmark_interval=0.2, max_watch_seconds=1.0) as api:
        yield api


class Collector:
    def __init__(self, kube: FakeKubeAPI, tmp: Path) -> None:
        self.kubeconfig = str(write_kubeconfig(tmp / "kubeconfig", kube.url))
        self.events: queue.Queue[Event] = queue.Queue()
        self.watchers: list[Watcher] = []
        self.restarts: list[tuple[str, str]] = []

    def watch(self, source: Source, **settings: object) -> Watcher:
        w = Watcher(api_client(self.kubeconfig), source, self.events.put,
                    WatchSettings(**settings),  # type: ignore[arg-type]
                    on_restart=lambda r, why: self.restarts.append((r, why)))
        self.watchers.append(w)
        w.start()
        return w

    def next(self, timeout: float = 5.0) -> Event:
        return self.events.get(timeout=timeout)

    def quiet(self, seconds: float) -> None:
        with pytest.raises(queue.Empty):
            self.events.get(timeout=seconds)


@pytest.fixture
def collect(kube: FakeKubeAPI, tmp_path: Path) -> Iterator[Collector]:
    c = Collector(kube, tmp_path)
    yield c
    for w in c.watchers:
        w.stop()


def test_paged_list_then_watch_resumes_without_relisting(kube: FakeKubeAPI,
                                                         collect: Collector) -> None:
    for i in range(5):
        kube.upsert("services", service("ns", f"s{i}", [f"10.0.0.{i}"]))
    w = collect.watch(Source(SERVICES), page_size=2, watch_timeout=1)
    first = collect.next()
    assert isinstance(first, Listed) and len(first.objects) == 5
    assert kube.count("list", "services") == 3  # three pages
    kube.upsert("services", service("ns", "s9", ["10.0.0.9"]))
    ev = collect.next()
    assert isinstance(ev, Changed) and ev.key == ("ns", "s9") and ev.obj is not None
    time.sleep(2.5)  # several watch streams end (timeoutSeconds) and resume from the last RV
    kube.delete("services", "ns", "s0")
    ev = collect.next()
    assert isinstance(ev, Changed) and ev.key == ("ns", "s0") and ev.obj is None
    collect.quiet(0.5)  # nothing replayed
    assert kube.count("list", "services") == 3 and kube.count("watch", "services") >= 3
    assert w.stats.synced and not collect.restarts


def test_a_list_is_slimmed_with_the_cyclic_collector_paused(kube: FakeKubeAPI,
                                                           tmp_path: Path) -> None:
    """Listing every EndpointSlice makes millions of objects that all survive and hold no
    cycles: the list's pages are read and slimmed with the cyclic collector off (100,000
    slices: 4.6 s of CPU with it, 1.4-2.0 without), and it is on again for the watch."""
    for i in range(5):
        kube.upsert("services", service("ns", f"s{i}", [f"10.0.0.{i}"]))
    events: queue.Queue[Event] = queue.Queue()
    w = Watcher(api_client(str(write_kubeconfig(tmp_path / "kubeconfig", kube.url))),
                Source(SERVICES), events.put, WatchSettings(page_size=2))
    seen: list[bool] = []
    slim = w._slim
    w._slim = lambda obj: (seen.append(gc.isenabled()), slim(obj))[1]
    was = gc.isenabled()
    gc.enable()
    try:
        w.start()
        first = events.get(timeout=5)
        assert isinstance(first, Listed) and len(first.objects) == 5
        assert gc.isenabled()
    finally:
        w.stop()
        if not was:
            gc.disable()
    assert seen == [False] * 5


def test_410_relists_and_the_list_drops_what_was_deleted(kube: FakeKubeAPI,
                                                        collect: Collector) -> None:
    kube.upsert("services", service("ns", "a", ["10.0.0.1"]))
    kube.upsert("services", service("ns", "b", ["10.0.0.2"]))
    collect.watch(Source(SERVICES), watch_timeout=1)
    assert isinstance(collect.next(), Listed)
    kube.set_down()
    kube.delete("services", "ns", "a")
    kube.compact()
    kube.set_down(False)
    ev = collect.next(timeout=10)  # not a Changed: the old watch cannot resume
    assert isinstance(ev, Listed) and set(ev.objects) == {("ns", "b")}
    assert ("services", "expired") in collect.restarts


def test_namespaced_source_and_label_selector(kube: FakeKubeAPI, collect: Collector) -> None:
    kube.upsert("services", service("a", "x", ["10.0.0.1"], labels={"dns": "on"}))
    kube.upsert("services", service("a", "y", ["10.0.0.2"]))
    kube.upsert("services", service("b", "z", ["10.0.0.3"], labels={"dns": "on"}))
    collect.watch(Source(SERVICES, "a"), label_selector="dns=on")
    first = collect.next()
    assert isinstance(first, Listed) and set(first.objects) == {("a", "x")}
    assert all(r.namespace == "a" for r in kube.requests if r.verb in ("list", "watch"))
    kube.upsert("services", service("a", "x", ["10.0.0.1"], labels={"dns": "off"}))
    ev = collect.next()
    assert isinstance(ev, Changed) and ev.key == ("a", "x") and ev.obj is None


def test_pods_that_stop_running_are_reported_gone(kube: FakeKubeAPI, collect: Collector) -> None:
    kube.upsert("pods", pod("ns", "p", "10.1.0.1"))
    collect.watch(Source(PODS))
    assert isinstance(collect.next(), Listed)
    kube.upsert("pods", pod("ns", "p", "10.1.0.1", phase="Failed"))
    ev = collect.next()
    assert isinstance(ev, Changed) and ev.obj is None


def test_api_errors_are_retried_and_the_watch_resumes(kube: FakeKubeAPI,
                                                     collect: Collector) -> None:
    collect.watch(Source(SERVICES), watch_timeout=1)
    assert isinstance(collect.next(), Listed)
    kube.set_down(refuse=False)
    time.sleep(1.5)
    kube.upsert("services", service("ns", "late", ["10.0.0.7"]))
    kube.set_down(False)
    ev = collect.next(timeout=10)
    assert isinstance(ev, Changed) and ev.key == ("ns", "late")
    assert ("services", "error") in collect.restarts
    assert kube.count("list", "services") == 1
