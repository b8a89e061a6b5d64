"""The cluster zone (``--cluster-zone``) answers as CoreDNS's kubernetes plugin, from the
very records kube2etcd writes (built here with kube2etcd.records, served by the lookup)."""

from __future__ import annotations

from kube2etcd.records import (
    CLUSTER_IP,
    EXTERNAL_NAME,
    HEADLESS,
    Domain,
    Endpoint,
    EndpointGroup,
    EndpointSet,
    Port,
    Service,
    pod_records,
    service_records,
    values,
)
from skydns.record import decode_record, key_path, name_labels
from skyserve.index import Index
from skyserve.lookup import Authority, Result, Settings, Zone
from skyserve.wire import constants as T
from skyserve.wire.constants import NOERROR, NXDOMAIN
from tests.support.rrtext import show

DOMAIN = Domain(("cluster", "local"))
HTTP = Port("http", 80, "TCP")
DNS = Port("dns", 53, "UDP")


def records() -> dict[str, str]:
    web = Service("default", "web", CLUSTER_IP, ("10.96.0.10",), ports=(HTTP, DNS))
    web_eps = EndpointSet("default", "web-1", "web", (EndpointGroup((
        Endpoint(("10.0.0.2",)), Endpoint(("10.0.0.3",), hostname="web-0")), (HTTP,)),))
    db = Service("default", "db", HEADLESS, ports=(HTTP,))
    db_eps = EndpointSet("default", "db-1", "db", (EndpointGroup((
        Endpoint(("10.0.1.1",), hostname="db-0"), Endpoint(("10.0.1.2",), hostname="db-1")),
        (HTTP,)),))
    ext = Service("default", "ext", EXTERNAL_NAME, external_name="www.example.com")
    out = {**service_records(DOMAIN, web, [web_eps]), **service_records(DOMAIN, db, [db_eps]),
           **service_records(DOMAIN, ext), **pod_records(DOMAIN, "default", "10.0.0.2")}
    return values(DOMAIN, out)


def authority(cluster: bool = True) -> Authority:
    index = Index()
    for key, value in records().items():
        index.put(key_path(key) or (), decode_record(key, value))
    zones = [Zone(name_labels("cluster.local"), cluster=cluster), Zone(name_labels("in-addr.arpa"))]
    return Authority(index, zones, Settings())


def ask(auth: Authority, name: str, qtype: int) -> Result:
    labels = name_labels(name)
    zone = auth.zone_of(labels)
    assert zone is not None
    return auth.answer(labels, qtype, zone)


def test_layout_levels_are_nodata_never_nxdomain_nor_a_union() -> None:
    auth = authority()
    for name in ("svc.cluster.local", "pod.cluster.local", "default.svc.cluster.local",
                 "default.pod.cluster.local", "_tcp.web.default.svc.cluster.local"):
        for qtype in (T.A, T.AAAA, T.SRV, T.TXT):
            res = ask(auth, name, qtype)
            assert res.rcode == NOERROR and not res.answer, (name, qtype)
            assert [r.rtype for r in res.authority] == [T.SOA], (name, qtype)
    assert ask(auth, "nons.svc.cluster.local", T.A).rcode == NXDOMAIN
    # Outside --cluster-zone, SkyDNS directory semantics stay: the namespace's union.
    assert ask(authority(cluster=False), "default.svc.cluster.local", T.A).answer


def test_bare_service_srv_is_one_per_port_with_addresses_in_additional() -> None:
    auth = authority()
    res = ask(auth, "web.default.svc.cluster.local", T.SRV)
    assert show(res.answer) == [
        "web.default.svc.cluster.local 33 10 50 53 web.default.svc.cluster.local",
        "web.default.svc.cluster.local 33 10 50 80 web.default.svc.cluster.local",
    ]
    assert set(show(res.additional)) == {"web.default.svc.cluster.local 1 10.96.0.10"}
    headless = ask(auth, "db.default.svc.cluster.local", T.SRV)
    assert show(headless.answer) == [
        "db.default.svc.cluster.local 33 10 50 80 db-0.db.default.svc.cluster.local",
        "db.default.svc.cluster.local 33 10 50 80 db-1.db.default.svc.cluster.local",
    ]
    assert show(headless.additional) == ["db-0.db.default.svc.cluster.local 1 10.0.1.1",
                                         "db-1.db.default.svc.cluster.local 1 10.0.1.2"]


def test_endpoint_names_of_a_cluster_ip_service_resolve() -> None:
    auth = authority()
    assert show(ask(auth, "web.default.svc.cluster.local", T.A).answer) == [
        "web.default.svc.cluster.local 1 10.96.0.10"]  # the cluster IP alone
    assert show(ask(auth, "10-0-0-2.web.default.svc.cluster.local", T.A).answer) == [
        "10-0-0-2.web.default.svc.cluster.local 1 10.0.0.2"]
    assert show(ask(auth, "web-0.web.default.svc.cluster.local", T.A).answer) == [
        "web-0.web.default.svc.cluster.local 1 10.0.0.3"]
    assert show(ask(auth, "3.0.0.10.in-addr.arpa", T.PTR).answer) == [
        "3.0.0.10.in-addr.arpa 12 web-0.web.default.svc.cluster.local"]


def test_forward_names_have_no_ptr_and_external_names_are_cnames() -> None:
    auth = authority()
    res = ask(auth, "web.default.svc.cluster.local", T.PTR)
    assert res.rcode == NOERROR and not res.answer and res.authority
    res = ask(auth, "ext.default.svc.cluster.local", T.SRV)
    assert show(res.answer) == ["ext.default.svc.cluster.local 5 www.example.com"]
    pod = ask(auth, "10-0-0-2.default.pod.cluster.local", T.A)
    assert show(pod.answer) == ["10-0-0-2.default.pod.cluster.local 1 10.0.0.2"]
