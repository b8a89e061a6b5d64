"""What the watchers deliver: events carrying API objects reduced to what DNS needs. No I/O.

Parsing the raw JSON here, rather than through the client's model classes, keeps a 10,000
object list fast and small; the reduced objects are all the bridge keeps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .records import (
    CLUSTER_IP,
    EXTERNAL_NAME,
    HEADLESS,
    Endpoint,
    EndpointGroup,
    EndpointSet,
    Pod,
    Port,
    Service,
)

SERVICES = "services"
ENDPOINT_SLICES = "endpointslices"
ENDPOINTS = "endpoints"
PODS = "pods"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"

Obj = Service | EndpointSet | Pod
Key = tuple[str, str]  # (namespace, name)
Json = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Source:
    resource: str
    namespace: str | None = None  # None: all namespaces

    def __str__(self) -> str:
        return self.resource + (f" in {self.namespace}" if self.namespace else "")


@dataclass(slots=True)
class Listed:
    source: Source
    objects: dict[Key, Obj]
    seen: float  # time.monotonic() when the list completed


@dataclass(slots=True)
class Changed:
    source: Source
    key: Key
    obj: Obj | None  # None: deleted, or no longer of interest (a pod that stopped, ...)
    seen: float


Event = Listed | Changed



def _ports(raw: list[Json] | None) -> tuple[Port, ...]:
    out = []
    for p in raw or ():
        if isinstance(p.get("port"), int):
            out.append(Port(p.get("name") or "", p["port"], p.get("protocol") or "TCP"))
    return tuple(out)


def slim_service(obj: Json) -> Service | None:
    meta, spec = obj["metadata"], obj.get("spec") or {}
    ns, name = meta.get("namespace", ""), meta["name"]
    ports = _ports(spec.get("ports"))
    if spec.get("type") == "ExternalName":
        return Service(ns, name, EXTERNAL_NAME, external_name=spec.get("externalName") or "")
    ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    publish = bool(spec.get("publishNotReadyAddresses"))
    if ips and ips[0] == "None":
        return Service(ns, name, HEADLESS, ports=ports, publish_not_ready=publish)
    return Service(ns, name, CLUSTER_IP, tuple(ip for ip in ips if ip and ip != "None"), "",
                   ports, publish)  # publish: endpoint PTRs of not-ready addresses too


def slim_slice(obj: Json) -> EndpointSet | None:
    meta = obj["metadata"]
    svc = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
    if not svc or obj.get("addressType") not in ("IPv4", "IPv6"):
        return None
    eps = []
    for ep in obj.get("endpoints") or ():
        ready = (ep.get("conditions") or {}).get("ready")
        eps.append(Endpoint(tuple(ep.get("addresses") or ()), ep.get("hostname") or "",
                            ready is not False))  # a missing "ready" counts as ready
    group = EndpointGroup(tuple(eps), _ports(obj.get("ports")))
    return EndpointSet(meta.get("namespace", ""), meta["name"], svc, (group,))


def slim_endpoints(obj: Json) -> EndpointSet | None:
    meta = obj["metadata"]
    groups = []
    for subset in obj.get("subsets") or ():
        eps = [
            Endpoint((a["ip"],), a.get("hostname") or "", ready)
            for key, ready in (("addresses", True), ("notReadyAddresses", False))
            for a in subset.get(key) or () if a.get("ip")
        ]
        groups.append(EndpointGroup(tuple(eps), _ports(subset.get("ports"))))
    return EndpointSet(meta.get("namespace", ""), meta["name"], meta["name"], tuple(groups))


def slim_pod(obj: Json) -> Pod | None:
    meta, status = obj["metadata"], obj.get("status") or {}
    if status.get("phase") != "Running":
        return None
    ips = [p.get("ip") for p in status.get("podIPs") or ()] or [status.get("podIP")]
    ips = [ip for ip in ips if ip]
    return Pod(meta.get("namespace", ""), meta["name"], tuple(ips)) if ips else None


SLIM: dict[str, Callable[[Json], Obj | None]] = {
    SERVICES: slim_service,
    ENDPOINT_SLICES: slim_slice,
    ENDPOINTS: slim_endpoints,
    PODS: slim_pod,
}


def key_of(obj: Json) -> Key:
    meta = obj["metadata"]
    return meta.get("namespace", ""), meta["name"]
