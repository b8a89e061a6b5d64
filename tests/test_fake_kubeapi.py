"""The fake Kubernetes API server, driven by the real `kubernetes` client (never patched)."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

import kubefake as fk
from kubefake import FakeKubeAPI
from tests.support.kubeconfig import api_client, write_kubeconfig

Event = dict[str, Any]


@pytest.fixture
def kube() -> Iterator[FakeKubeAPI]:
    with FakeKubeAPI(bookmark_interval=0.2, max_watch_seconds=5.0) as api:
        yield api


@pytest.fixture
def apic(kube: FakeKubeAPI, tmp_path: Path) -> Iterator[client.ApiClient]:
    with api_client(write_kubeconfig(tmp_path / "kubeconfig", kube.url)) as c:
        yield c


@pytest.fixture
def core(apic: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(apic)


class WatchThread(threading.Thread):
    """Runs Watch().stream(func, **kwargs) in the background, collecting events or the error."""

    def __init__(self, func: Callable[..., Any], stop_when: Callable[[Event], bool] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(daemon=True)
        self.func, self.stop_when, self.kwargs = func, stop_when, kwargs
        self.watch = watch.Watch()
        self.events: list[Event] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for ev in self.watch.stream(self.func, **self.kwargs):
                self.events.append(ev)
                if self.stop_when and self.stop_when(ev):
                    self.watch.stop()
        except BaseException as exc:
            self.error = exc


def _seed_services(kube: FakeKubeAPI) -> None:
    for i in range(5):
        ports = [{"name": "http", "port": 80}]
        kube.upsert("services", fk.service(f"ns{i % 2}", f"svc{i}", [f"10.0.0.{i}"], ports))


def _raw(host_port: int, method: str, path: str) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", host_port, timeout=5)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        body = resp.read().decode()
        is_json = "json" in resp.getheader("Content-Type", "")
        return resp.status, json.loads(body) if is_json else body
    finally:
        conn.close()


def test_paged_list_has_one_resource_version(kube: FakeKubeAPI, core: client.CoreV1Api) -> None:
    _seed_services(kube)
    pages, token = [], None
    for _ in range(10):
        page = core.list_service_for_all_namespaces(limit=2, _continue=token)
        pages.append(page)
        token = page.metadata._continue
        kube.upsert("services", fk.service("ns9", f"late{len(pages)}"))  # not in this list
        if not token:
            break
    assert [len(p.items) for p in pages] == [2, 2, 1]
    assert {p.metadata.resource_version for p in pages} == {"105"}
    assert pages[0].metadata.remaining_item_count == 3
    names = [(s.metadata.namespace, s.metadata.name) for p in pages for s in p.items]
    assert names == [("ns0", "svc0"), ("ns0", "svc2"), ("ns0", "svc4"), ("ns1", "svc1"),
                     ("ns1", "svc3")]
    assert isinstance(pages[0].items[0], client.V1Service)
    assert pages[0].items[0].spec.ports[0].target_port == 80
    assert kube.count("list", "services") == 3
    ns1 = core.list_namespaced_service("ns1")
    assert [s.metadata.name for s in ns1.items] == ["svc1", "svc3"]
    assert kube.count("list", "services", namespace="ns1") == 1


def test_paged_list_serves_its_snapshot_not_later_changes(
    kube: FakeKubeAPI, core: client.CoreV1Api
) -> None:
    _seed_services(kube)
    first = core.list_service_for_all_namespaces(limit=2)
    kube.upsert("services", fk.service("ns1", "svc3", ["10.9.9.9"]))  # on the next page
    rest = core.list_service_for_all_namespaces(limit=10, _continue=first.metadata._continue)
    svc3 = next(s for s in rest.items if s.metadata.name == "svc3")
    assert svc3.spec.cluster_ip == "10.0.0.3"
    fresh = core.list_namespaced_service("ns1")
    assert [s.spec.cluster_ip for s in fresh.items] == ["10.0.0.1", "10.9.9.9"]


def test_typed_endpoint_slices_and_other_resources(
    kube: FakeKubeAPI, apic: client.ApiClient, core: client.CoreV1Api
) -> None:
    kube.upsert("endpointslices", fk.endpoint_slice(
        "ns0", "web-abcde", "web", endpoints=["10.1.0.1", {
            "addresses": ["10.1.0.2"], "conditions": {"ready": False}, "hostname": "web-1",
            "targetRef": {"kind": "Pod", "namespace": "ns0", "name": "web-1"}}],
        ports=[{"name": "http", "port": 8080}]))
    kube.upsert("endpointslices", fk.endpoint_slice(
        "ns0", "web-v6", "web", address_type="IPv6", endpoints=["fd00::1"]))
    slices = client.DiscoveryV1Api(apic).list_endpoint_slice_for_all_namespaces()
    first = slices.items[0]
    assert isinstance(first, client.V1EndpointSlice) and first.address_type == "IPv4"
    assert first.metadata.labels["kubernetes.io/service-name"] == "web"
    assert [e.conditions.ready for e in first.endpoints] == [True, False]
    assert first.endpoints[1].hostname == "web-1" and first.endpoints[1].target_ref.name == "web-1"
    assert first.ports[0].port == 8080 and slices.items[1].address_type == "IPv6"
    ns_slices = client.DiscoveryV1Api(apic).list_namespaced_endpoint_slice("ns0")
    assert len(ns_slices.items) == 2

    kube.upsert("services", fk.service("ns0", "web", ["10.0.0.1", "fd00::a"], headless=False))
    kube.upsert("services", fk.service("ns0", "ext", type="ExternalName",
                                       external_name="example.org"))
    kube.upsert("endpoints", fk.endpoints("ns0", "web", [
        {"addresses": ["10.1.0.1"], "notReadyAddresses": ["10.1.0.2"], "ports": [{"port": 80}]}]))
    kube.upsert("pods", fk.pod("ns0", "web-1", "10.1.0.2", ips=["10.1.0.2", "fd00::2"]))
    kube.upsert("namespaces", fk.namespace("ns0"))
    svc = core.read_namespaced_service("web", "ns0")
    assert svc.spec.cluster_ips == ["10.0.0.1", "fd00::a"] and svc.kind == "Service"
    assert svc.spec.ip_families == ["IPv4", "IPv6"]
    assert core.read_namespaced_service("ext", "ns0").spec.external_name == "example.org"
    ep = core.list_namespaced_endpoints("ns0").items[0]
    assert ep.subsets[0].not_ready_addresses[0].ip == "10.1.0.2"
    pod = core.list_pod_for_all_namespaces().items[0]
    assert [p.ip for p in pod.status.pod_ips] == ["10.1.0.2", "fd00::2"]
    assert core.read_namespace("ns0").status.phase == "Active"
    assert [n.metadata.name for n in core.list_namespace().items] == ["ns0"]
    with pytest.raises(ApiException) as err:
        core.read_namespaced_service("missing", "ns0")
    assert err.value.status == 404 and json.loads(err.value.body)["reason"] == "NotFound"


def test_watch_from_list_rv_sees_changes_and_bookmarks(
    kube: FakeKubeAPI, core: client.CoreV1Api
) -> None:
    _seed_services(kube)
    listed = core.list_service_for_all_namespaces()
    rv = int(listed.metadata.resource_version)
    kube.upsert("services", fk.service("ns0", "svc0", ["10.0.0.100"]))  # before the watch
    timer = threading.Timer(0.3, lambda: (kube.upsert("services", fk.service("ns0", "new")),
                                          kube.delete("services", "ns1", "svc1")))
    w = watch.Watch()
    seen: list[tuple[str, int, str | None]] = []
    started = time.monotonic()
    timer.start()
    for ev in w.stream(core.list_service_for_all_namespaces, resource_version=str(rv),
                       allow_watch_bookmarks=True, timeout_seconds=1):
        seen.append((ev["type"], int(ev["raw_object"]["metadata"]["resourceVersion"]),
                     w.resource_version))
    elapsed = time.monotonic() - started
    timer.join()
    changes = [(t, r) for t, r, _ in seen if t != "BOOKMARK"]
    assert changes == [("MODIFIED", rv + 1), ("ADDED", rv + 2), ("DELETED", rv + 3)]
    assert all(tracked == str(r) for _, r, tracked in seen)  # the client tracks the RV
    bookmarks = [r for t, r, _ in seen if t == "BOOKMARK"]
    assert len(bookmarks) >= 3 and bookmarks[-1] == rv + 3
    assert w.resource_version == str(kube.resource_version)
    assert 0.9 <= elapsed < 2.5


def test_watch_without_rv_starts_with_current_state(
    kube: FakeKubeAPI, core: client.CoreV1Api
) -> None:
    _seed_services(kube)
    events = list(watch.Watch().stream(core.list_namespaced_service, "ns1", timeout_seconds=1))
    assert [(e["type"], e["object"].metadata.name) for e in events] == [
        ("ADDED", "svc1"), ("ADDED", "svc3")]
    assert isinstance(events[0]["object"], client.V1Service)


def test_timeout_seconds_ends_the_watch_in_time(kube: FakeKubeAPI, core: client.CoreV1Api) -> None:
    started = time.monotonic()
    events = list(watch.Watch().stream(core.list_service_for_all_namespaces,
                                       resource_version=str(kube.resource_version),
                                       timeout_seconds=1))
    assert events == [] and 0.9 <= time.monotonic() - started < 2.5


def test_server_side_max_duration_reconnects_with_last_rv(
    kube: FakeKubeAPI, core: client.CoreV1Api
) -> None:
    kube.max_watch_seconds = 0.4
    rv = kube.resource_version
    t = WatchThread(core.list_service_for_all_namespaces, resource_version=str(rv),
                    allow_watch_bookmarks=True,
                    stop_when=lambda ev: ev["raw_object"]["metadata"].get("name") == "last")
    t.start()
    assert kube.wait_for_watches(1, "services", timeout=3)
    kube.upsert("services", fk.service("ns0", "first"))
    deadline = time.monotonic() + 3
    while kube.count("watch", "services") < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    kube.upsert("services", fk.service("ns0", "last"))
    t.join(3)
    assert not t.is_alive() and t.error is None
    changes = [(e["type"], e["object"].metadata.name) for e in t.events if e["type"] != "BOOKMARK"]
    assert changes == [("ADDED", "first"), ("ADDED", "last")]  # nothing lost or repeated
    sent = [int(r.query["resourceVersion"]) for r in kube.requests if r.verb == "watch"]
    assert len(sent) >= 3 and sent[0] == rv and sent[-1] > rv and sent == sorted(sent)


def test_watch_from_compacted_rv_raises_410(kube: FakeKubeAPI, core: client.CoreV1Api) -> None:
    rv = core.list_service_for_all_namespaces().metadata.resource_version
    kube.upsert("services", fk.service("ns0", "a"))
    kube.compact()
    with pytest.raises(ApiException) as err:
        for _ in watch.Watch().stream(core.list_service_for_all_namespaces, resource_version=rv,
                                      timeout_seconds=2):
            pass
    assert err.value.status == 410 and "too old resource version" in err.value.reason
    with pytest.raises(ApiException) as err:  # without timeout_seconds the client retries once
        for _ in watch.Watch().stream(core.list_service_for_all_namespaces, resource_version=rv):
            pass
    assert err.value.status == 410
    assert kube.count("watch") == 3
    current = str(kube.resource_version)  # a fresh RV works again
    assert list(watch.Watch().stream(core.list_service_for_all_namespaces,
                                     resource_version=current, timeout_seconds=1)) == []


def test_expired_continue_token_gives_410(kube: FakeKubeAPI, core: client.CoreV1Api) -> None:
    _seed_services(kube)
    token = core.list_service_for_all_namespaces(limit=2).metadata._continue
    assert core.list_service_for_all_namespaces(limit=2, _continue=token).items
    kube.compact()
    with pytest.raises(ApiException) as err:
        core.list_service_for_all_namespaces(limit=2, _continue=token)
    assert err.value.status == 410 and json.loads(err.value.body)["reason"] == "Expired"
    with pytest.raises(ApiException) as err:
        core.list_service_for_all_namespaces(limit=2, _continue="not-a-token")
    assert err.value.status == 400


@pytest.mark.parametrize(("selector", "expected"), [
    ("app=web", ["a", "b"]),
    ("app==web,tier!=db", ["a"]),
    ("tier", ["b", "c"]),
    ("!tier", ["a", "d"]),
    ("app in (web, api),tier notin (db)", ["a", "d"]),
    ("", ["a", "b", "c", "d"]),
])
def test_label_selector_on_lists(kube: FakeKubeAPI, core: client.CoreV1Api, selector: str,
                                 expected: list[str]) -> None:
    for name, labels in [("a", {"app": "web"}), ("b", {"app": "web", "tier": "db"}),
                         ("c", {"tier": "fe"}), ("d", {"app": "api"})]:
        kube.upsert("services", fk.service("ns0", name, labels=labels))
    found = core.list_service_for_all_namespaces(label_selector=selector)
    assert [s.metadata.name for s in found.items] == expected


def test_label_selector_and_namespace_on_watches(
    kube: FakeKubeAPI, core: client.CoreV1Api
) -> None:
    rv = str(kube.resource_version)
    kube.upsert("services", fk.service("ns0", "a", labels={"dns": "yes"}))
    kube.upsert("services", fk.service("ns0", "b"))
    kube.upsert("services", fk.service("ns1", "c", labels={"dns": "yes"}))  # other namespace
    kube.upsert("services", fk.service("ns0", "a", labels={"dns": "no"}))  # leaves the selector
    kube.upsert("services", fk.service("ns0", "b", labels={"dns": "yes"}))  # enters it
    kube.delete("services", "ns0", "b")
    events = watch.Watch().stream(core.list_namespaced_service, "ns0", resource_version=rv,
                                  label_selector="dns=yes", timeout_seconds=1)
    seen = [(e["type"], e["object"].metadata.name, e["object"].metadata.labels["dns"],
             int(e["object"].metadata.resource_version)) for e in events]
    base = int(rv)
    assert seen == [("ADDED", "a", "yes", base + 1), ("DELETED", "a", "yes", base + 4),
                    ("ADDED", "b", "yes", base + 5), ("DELETED", "b", "yes", base + 6)]
    with pytest.raises(ApiException) as err:
        core.list_service_for_all_namespaces(label_selector="a in b")
    assert err.value.status == 400


def test_set_down_refuses_connections_then_recovers(
    kube: FakeKubeAPI, core: client.CoreV1Api
) -> None:
    t = WatchThread(core.list_service_for_all_namespaces,
                    resource_version=str(kube.resource_version))
    t.start()
    assert kube.wait_for_watches(1, timeout=3)
    url = kube.url
    kube.set_down(True)
    t.join(2)
    assert not t.is_alive()  # the open watch was cut: "Response ended prematurely"
    assert isinstance(t.error, urllib3.exceptions.ProtocolError)
    with pytest.raises(urllib3.exceptions.MaxRetryError):  # connection refused
        core.list_service_for_all_namespaces()
    kube.set_down(False)
    kube.upsert("services", fk.service("ns0", "back"))
    assert kube.url == url
    assert [s.metadata.name for s in core.list_service_for_all_namespaces().items] == ["back"]


def test_set_down_503_then_recovers(kube: FakeKubeAPI, core: client.CoreV1Api) -> None:
    t = WatchThread(core.list_service_for_all_namespaces,
                    resource_version=str(kube.resource_version))
    t.start()
    assert kube.wait_for_watches(1, timeout=3)
    kube.set_down(True, refuse=False)
    t.join(2)
    # The cut stream, or the 503 of the client's immediate reconnect: either way it fails.
    assert not t.is_alive()
    assert isinstance(t.error, urllib3.exceptions.ProtocolError | ApiException)
    with pytest.raises(ApiException) as err:
        core.list_service_for_all_namespaces()
    assert err.value.status == 503
    with pytest.raises(ApiException) as err:
        for _ in watch.Watch().stream(core.list_service_for_all_namespaces, timeout_seconds=1):
            pass
    assert err.value.status == 503
    kube.set_down(False)
    assert core.list_service_for_all_namespaces().items == []


def test_stop_ends_open_watches_promptly(kube: FakeKubeAPI, core: client.CoreV1Api) -> None:
    t = WatchThread(core.list_service_for_all_namespaces,
                    resource_version=str(kube.resource_version))
    t.start()
    assert kube.wait_for_watches(1, timeout=3)
    started = time.monotonic()
    kube.stop()
    t.join(2)
    assert not t.is_alive() and time.monotonic() - started < 1.0
    assert isinstance(t.error, urllib3.exceptions.ProtocolError)
    assert kube.open_watches() == 0


def test_discovery_unknown_paths_and_read_only(kube: FakeKubeAPI, apic: client.ApiClient) -> None:
    assert client.VersionApi(apic).get_code().git_version.startswith("v1.")
    assert client.CoreApi(apic).get_api_versions().versions == ["v1"]
    groups = client.ApisApi(apic).get_api_versions().groups
    assert [g.name for g in groups] == ["discovery.k8s.io"]
    assert _raw(kube.port, "GET", "/readyz") == (200, "ok")
    for path in ("/api/v1/deployments", "/apis/apps/v1/deployments", "/api/v1/namespaces/x/y/z/w",
                 "/api/v1/namespaces/ns0/namespaces", "/nope"):
        status, body = _raw(kube.port, "GET", path)
        assert status == 404 and body["kind"] == "Status" and body["reason"] == "NotFound", path
    status, body = _raw(kube.port, "POST", "/api/v1/namespaces/ns0/services")
    assert status == 405 and body["code"] == 405
    assert kube.count("unknown") == 5 and kube.count("discovery") == 4 and kube.count("post") == 1


def test_store_semantics(kube: FakeKubeAPI) -> None:
    rv1 = kube.upsert("services", {"metadata": {"name": "s"}, "spec": {}})
    first = kube.get("services", "default", "s")
    assert first is not None and first["kind"] == "Service"
    assert first["metadata"]["resourceVersion"] == str(rv1)
    rv2 = kube.upsert("services", fk.service("default", "s", ["10.0.0.1"]))
    second = kube.get("services", None, "s")
    assert second is not None and rv2 == rv1 + 1
    assert second["metadata"]["uid"] == first["metadata"]["uid"]
    assert kube.delete("services", "default", "s") == rv2 + 1
    kube.upsert("services", fk.service("default", "s"))
    third = kube.get("services", "default", "s")
    assert third is not None and third["metadata"]["uid"] != first["metadata"]["uid"]
    kube.upsert("namespaces", fk.namespace("zz"))
    assert kube.get("namespaces", "ignored", "zz") is not None
    assert [o["metadata"]["name"] for o in kube.list_objects("services")] == ["s"]
    with pytest.raises(KeyError):
        kube.delete("services", "default", "missing")
    assert fk.parse_label_selector("a,!b,c=d") == [
        ("a", "exists", frozenset()), ("b", "!", frozenset()), ("c", "in", frozenset(["d"]))]
