"""records.py: every record kind, keys, labels and values, without I/O."""

from __future__ import annotations

import json

from kube2etcd.records import (
    CLUSTER_IP,
    EXTERNAL_NAME,
    HEADLESS,
    OWNER_FIELD,
    Domain,
    Endpoint,
    EndpointGroup,
    EndpointSet,
    Port,
    Service,
    dashed,
    encode,
    fnv32a,
    pod_records,
    service_records,
    values,
    version_records,
)
from skydns.record import Record, decode_record, owner_of

ZONE = Domain(("cluster", "local"), "/skydns", 30)
SVC = "/skydns/local/cluster/svc"
HTTP = Port("http", 80, "TCP")


def hosts(records: dict[str, Record]) -> dict[str, tuple[str, int]]:
    return {k: (r.host, r.port) for k, r in records.items()}


def headless(*groups: EndpointGroup, name: str = "db", publish: bool = False) -> tuple[
    Service, list[EndpointSet]
]:
    svc = Service("ns", name, HEADLESS, ports=(HTTP,), publish_not_ready=publish)
    return svc, [EndpointSet("ns", f"{name}-abc", name, groups)]


def test_fnv_matches_kube2sky() -> None:
    value = '{"host":"10.0.183.39","priority":10,"weight":10,"ttl":30,"targetstrip":0}'
    assert fnv32a(value) == "e3b7df90"
    assert fnv32a('{"host":"11.1.1.1","priority":10,"weight":10,"ttl":30,"targetstrip":0}') == (
        "2f15de08"
    )
    assert len(fnv32a("")) == 8


def test_cluster_ip_service() -> None:
    svc = Service("default", "kubernetes", CLUSTER_IP, ("10.96.0.1",),
                  ports=(Port("https", 443, "TCP"), Port("", 8080, "TCP")))
    recs = service_records(ZONE, svc)
    ptr = fnv32a("default/kubernetes")
    name = "kubernetes.default.svc.cluster.local."
    assert hosts(recs) == {
        f"{SVC}/default/kubernetes/{fnv32a('10.96.0.1')}": ("10.96.0.1", 0),
        f"/skydns/arpa/in-addr/10/96/0/1/{ptr}": (name, 0),
        f"{SVC}/default/kubernetes/_tcp/_https/{fnv32a(name)}": (name, 443),
    }  # the unnamed port gives no SRV
    assert all(r.ttl == 30 for r in recs.values())


def test_dual_stack_cluster_ips() -> None:
    svc = Service("ns", "web", CLUSTER_IP, ("10.0.0.5", "fd00::5"), ports=(HTTP,))
    recs = service_records(ZONE, svc)
    a = {r.host for k, r in recs.items() if k.count("/") == 7}
    assert a == {"10.0.0.5", "fd00::5"}
    ptr6 = [k for k in recs if k.startswith("/skydns/arpa/ip6/")]
    assert len(ptr6) == 1
    assert ptr6[0].startswith("/skydns/arpa/ip6/f/d/0/0/" + "0/" * 27 + "5/")
    assert sum(1 for k in recs if "/_tcp/_http/" in k) == 1


def test_cluster_ip_pending_has_no_records() -> None:
    assert service_records(ZONE, Service("ns", "x", CLUSTER_IP, (), ports=(HTTP,))) == {}


def test_headless_ready_and_unready() -> None:
    group = EndpointGroup(
        (Endpoint(("10.0.0.2",)), Endpoint(("10.0.0.3",), ready=False)), (HTTP,)
    )
    svc, sets = headless(group)
    recs = service_records(ZONE, svc, sets)
    target = "10-0-0-2.db.ns.svc.cluster.local."
    assert hosts(recs) == {
        f"{SVC}/ns/db/10-0-0-2": ("10.0.0.2", 0),
        f"{SVC}/ns/db/_tcp/_http/10-0-0-2": (target, 80),
        f"/skydns/arpa/in-addr/10/0/0/2/{fnv32a('ns/db')}": (target, 0),
    }


def test_headless_publish_not_ready() -> None:
    group = EndpointGroup((Endpoint(("10.0.0.3",), ready=False),), (HTTP,))
    svc, sets = headless(group, publish=True)
    assert f"{SVC}/ns/db/10-0-0-3" in service_records(ZONE, svc, sets)
    svc, sets = headless(group, publish=False)
    assert service_records(ZONE, svc, sets) == {}


def test_headless_without_endpoints_has_no_records() -> None:
    svc, _ = headless()
    assert service_records(ZONE, svc, []) == {}
    assert service_records(ZONE, svc, [EndpointSet("ns", "db-x", "db", ())]) == {}


def test_headless_hostnames_and_duplicates() -> None:
    group = EndpointGroup(
        (
            Endpoint(("10.0.0.2",), hostname="web-0"),
            Endpoint(("10.0.0.3",), hostname="web-1"),
            Endpoint(("10.0.0.4",), hostname="web-1"),
        ),
        (HTTP,),
    )
    svc, sets = headless(group)
    recs = service_records(ZONE, svc, sets)
    assert recs[f"{SVC}/ns/db/web-0"].host == "10.0.0.2"
    assert recs[f"{SVC}/ns/db/web-1/{fnv32a('10.0.0.3')}"].host == "10.0.0.3"
    assert recs[f"{SVC}/ns/db/web-1/{fnv32a('10.0.0.4')}"].host == "10.0.0.4"
    srv = {k: (r.host, r.port) for k, r in recs.items() if "/_tcp/" in k}
    assert srv == {
        f"{SVC}/ns/db/_tcp/_http/web-0": ("web-0.db.ns.svc.cluster.local.", 80),
        f"{SVC}/ns/db/_tcp/_http/web-1": ("web-1.db.ns.svc.cluster.local.", 80),
    }
    ptrs = {r.host for k, r in recs.items() if k.startswith("/skydns/arpa/")}
    assert ptrs == {"web-0.db.ns.svc.cluster.local.", "web-1.db.ns.svc.cluster.local."}


def test_headless_same_ip_in_two_slices_and_ports_per_slice() -> None:
    svc = Service("ns", "db", HEADLESS, ports=(HTTP,))
    sets = [
        EndpointSet("ns", "db-a", "db", (EndpointGroup(
            (Endpoint(("10.0.0.2",), ready=False),), (Port("http", 8080, "TCP"),)),)),
        EndpointSet("ns", "db-b", "db", (EndpointGroup(
            (Endpoint(("10.0.0.2",)), Endpoint(("fd00::2",))),
            (Port("http", 8080, "TCP"), Port("dns", 53, "UDP"), Port("", 9, "TCP"))),)),
    ]
    recs = service_records(ZONE, svc, sets)
    assert recs[f"{SVC}/ns/db/10-0-0-2"].host == "10.0.0.2"
    assert recs[f"{SVC}/ns/db/fd00--2"].host == "fd00::2"
    assert recs[f"{SVC}/ns/db/_tcp/_http/10-0-0-2"].port == 8080
    assert recs[f"{SVC}/ns/db/_udp/_dns/fd00--2"].port == 53
    assert sum(1 for k in recs if "/_tcp/_http/" in k) == 2


def test_external_name() -> None:
    svc = Service("ns", "ext", EXTERNAL_NAME, external_name="Example.COM", ports=(HTTP,))
    recs = service_records(ZONE, svc)
    assert hosts(recs) == {f"{SVC}/ns/ext/{fnv32a('Example.COM')}": ("example.com.", 0)}
    for target in ("not a name", "10.0.0.300", "192.0.2.1", "2001:db8::1"):
        # An address is no CNAME target: skyserve would flag the value invalid.
        bad = Service("ns", "ext", EXTERNAL_NAME, external_name=target)
        assert service_records(ZONE, bad) == {}, target


def test_ptr_shared_ip_gets_one_leaf_per_service() -> None:
    a = service_records(ZONE, Service("ns", "a", CLUSTER_IP, ("10.0.0.9",)))
    b = service_records(ZONE, Service("other", "a", CLUSTER_IP, ("10.0.0.9",)))
    pa = {k for k in a if k.startswith("/skydns/arpa/")}
    pb = {k for k in b if k.startswith("/skydns/arpa/")}
    assert len(pa) == len(pb) == 1 and pa != pb
    assert next(iter(pa)).rsplit("/", 1)[0] == next(iter(pb)).rsplit("/", 1)[0]


def test_dns_version() -> None:
    recs = version_records(ZONE)
    assert list(recs) == ["/skydns/local/cluster/dns-version"]
    value = values(ZONE, recs)["/skydns/local/cluster/dns-version"]
    assert json.loads(value) == {"text": "1.1.0", "ttl": 30, "kube2etcd": "cluster.local"}


def test_pods() -> None:
    assert hosts(pod_records(ZONE, "ns", "10.1.2.3")) == {
        "/skydns/local/cluster/pod/ns/10-1-2-3": ("10.1.2.3", 0)
    }
    assert list(pod_records(ZONE, "ns", "::1")) == ["/skydns/local/cluster/pod/ns/0--1"]
    assert pod_records(ZONE, "ns", "garbage") == {}


def test_dashed() -> None:
    assert dashed("10.0.0.2") == "10-0-0-2"
    assert dashed("fd00::") == "fd00--0"
    assert dashed("2001:db8::1") == "2001-db8--1"


def test_invalid_names_are_never_written() -> None:
    assert service_records(ZONE, Service("ns", "Bad_Name", CLUSTER_IP, ("10.0.0.1",))) == {}
    group = EndpointGroup((Endpoint(("10.0.0.2",), hostname="*"),), (Port("h*", 1, "TCP"),))
    svc, sets = headless(group)
    recs = service_records(ZONE, svc, sets)
    ptr = f"/skydns/arpa/in-addr/10/0/0/2/{fnv32a('ns/db')}"
    assert list(recs) == [f"{SVC}/ns/db/10-0-0-2", ptr]


def test_values_carry_the_marker_and_decode_in_skyserve() -> None:
    recs = service_records(ZONE, Service("ns", "a", CLUSTER_IP, ("10.0.0.1",), ports=(HTTP,)))
    for key, value in values(ZONE, recs).items():
        assert owner_of(value, OWNER_FIELD) == "cluster.local"
        decoded = decode_record(key, value)
        assert decoded.host == recs[key].host and decoded.ttl == 30
    rec = Record(key="/k", host="10.0.0.1", ttl=5)
    assert json.loads(encode(rec, "z")) == {**json.loads(rec.to_json()), "kube2etcd": "z"}
    assert owner_of(b'{"host":"10.0.0.1"}', OWNER_FIELD) is None
    assert owner_of(b"not json", OWNER_FIELD) is None


def test_prefix_and_domain_are_configurable() -> None:
    zone = Domain(("k8s", "example", "org"), "/dns/root", 5)
    recs = service_records(zone, Service("ns", "a", CLUSTER_IP, ("10.0.0.1",)))
    assert {k.rsplit("/", 1)[0] for k in recs} == {
        "/dns/root/org/example/k8s/svc/ns/a", "/dns/root/arpa/in-addr/10/0/0/1"
    }
    assert {r.host for r in recs.values()} == {"10.0.0.1", "a.ns.svc.k8s.example.org."}


def test_cluster_ip_endpoint_ptrs() -> None:
    """Endpoint IPs of a ClusterIP service get names and PTRs, as CoreDNS answers them
    (issue 10: they used to get PTRs only); groups keep them out of the service's answer."""
    svc = Service("ns", "web", CLUSTER_IP, ("10.96.0.5",), ports=(HTTP,))
    sets = [
        EndpointSet("ns", "web-a", "web", (EndpointGroup((
            Endpoint(("10.0.0.2",)),
            Endpoint(("10.0.0.3",), hostname="web-0"),
            Endpoint(("10.0.0.4",), ready=False),
            Endpoint(("fd00::2",)),
        ), (HTTP,)),)),
        EndpointSet("ns", "web-b", "web", (EndpointGroup((  # the same IP in a second slice
            Endpoint(("10.0.0.2",)),),),)),
    ]
    recs = service_records(ZONE, svc, sets)
    leaf = fnv32a("ns/web")
    name = "web.ns.svc.cluster.local."
    ptr6 = "/skydns/arpa/ip6/" + "/".join("fd00" + "0" * 27 + "2") + f"/{leaf}"
    assert hosts(recs) == {
        f"{SVC}/ns/web/{fnv32a('10.96.0.5')}": ("10.96.0.5", 0),
        f"/skydns/arpa/in-addr/10/96/0/5/{leaf}": (name, 0),
        f"{SVC}/ns/web/_tcp/_http/{fnv32a(name)}": (name, 80),
        f"/skydns/arpa/in-addr/10/0/0/2/{leaf}": (f"10-0-0-2.{name}", 0),
        f"/skydns/arpa/in-addr/10/0/0/3/{leaf}": (f"web-0.{name}", 0),
        ptr6: (f"fd00--2.{name}", 0),
        f"{SVC}/ns/web/10-0-0-2/{fnv32a('10.0.0.2')}": ("10.0.0.2", 0),
        f"{SVC}/ns/web/web-0/{fnv32a('10.0.0.3')}": ("10.0.0.3", 0),
        f"{SVC}/ns/web/fd00--2/{fnv32a('fd00::2')}": ("fd00::2", 0),
    }  # 10.0.0.4 is not ready: no name, no PTR; no endpoint SRV targets
    assert {r.group for k, r in recs.items() if k.startswith(f"{SVC}/")
            and r.port == 0} == {"service", "endpoint"}
    published = Service("ns", "web", CLUSTER_IP, ("10.96.0.5",), ports=(HTTP,),
                        publish_not_ready=True)
    recs = service_records(ZONE, published, sets)
    assert recs[f"/skydns/arpa/in-addr/10/0/0/4/{leaf}"].host == f"10-0-0-4.{name}"
    # No cluster IP yet: the endpoint names and PTRs alone.
    pending = Service("ns", "web", CLUSTER_IP, (), ports=(HTTP,))
    assert set(hosts(service_records(ZONE, pending, sets)).values()) == {
        (f"10-0-0-2.{name}", 0), (f"web-0.{name}", 0), (f"fd00--2.{name}", 0),
        ("10.0.0.2", 0), ("10.0.0.3", 0), ("fd00::2", 0)}


def test_cluster_ip_endpoint_ptr_shared_ip_and_own_cluster_ip() -> None:
    ep = [EndpointSet("ns", "x", "a", (EndpointGroup((Endpoint(("10.0.0.9",)),)),))]
    a = service_records(ZONE, Service("ns", "a", CLUSTER_IP, ("10.96.0.1",)), ep)
    b = service_records(ZONE, Service("ns", "b", CLUSTER_IP, ("10.96.0.2",)),
                        [EndpointSet("ns", "y", "b", ep[0].groups)])
    pa = {k: r.host for k, r in a.items() if k.startswith("/skydns/arpa/in-addr/10/0/0/9/")}
    pb = {k: r.host for k, r in b.items() if k.startswith("/skydns/arpa/in-addr/10/0/0/9/")}
    assert pa == {f"/skydns/arpa/in-addr/10/0/0/9/{fnv32a('ns/a')}":
                  "10-0-0-9.a.ns.svc.cluster.local."}
    assert pb == {f"/skydns/arpa/in-addr/10/0/0/9/{fnv32a('ns/b')}":
                  "10-0-0-9.b.ns.svc.cluster.local."}
    # An endpoint that is the service's own cluster IP: the service's PTR wins.
    own = [EndpointSet("ns", "z", "c", (EndpointGroup((Endpoint(("10.96.0.3",)),)),))]
    c = service_records(ZONE, Service("ns", "c", CLUSTER_IP, ("10.96.0.3",)), own)
    assert c[f"/skydns/arpa/in-addr/10/96/0/3/{fnv32a('ns/c')}"].host == (
        "c.ns.svc.cluster.local.")
