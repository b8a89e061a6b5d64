"""Builders of the Kubernetes objects the fake API serves, as the API returns them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kubefake.model import DISCOVERY_GROUP, Obj


# ----- object builders: plain dicts shaped so the client's typed models deserialize -----
def _meta(ns: str | None, name: str, labels: Mapping[str, str] | None) -> Obj:
    meta: Obj = {"name": name, "labels": dict(labels or {})}
    if ns is not None:
        meta["namespace"] = ns
    return meta

def service(ns: str, name: str, cluster_ips: Sequence[str] = (),
            ports: Sequence[Mapping[str, Any]] = (), type: str = "ClusterIP",
            external_name: str | None = None, headless: bool = False,
            labels: Mapping[str, str] | None = None, publish_not_ready: bool = False,
            ip_families: Sequence[str] | None = None,
            selector: Mapping[str, str] | None = None) -> Obj:
    """A v1 Service. Ports default to protocol TCP and targetPort = port."""
    spec: Obj = {"type": type, "sessionAffinity": "None",
                 "publishNotReadyAddresses": publish_not_ready,
                 "ports": [{"protocol": "TCP", "targetPort": p["port"], **p} for p in ports]}
    if selector:
        spec["selector"] = dict(selector)
    if type == "ExternalName":
        spec["externalName"] = external_name or ""
    else:
        ips = ["None"] if headless else list(cluster_ips)
        if ips:
            spec["clusterIP"], spec["clusterIPs"] = ips[0], ips
        families = list(ip_families or [("IPv6" if ":" in ip else "IPv4")
                                        for ip in ips if ip != "None"]) or ["IPv4"]
        spec["ipFamilies"] = families
        spec["ipFamilyPolicy"] = "SingleStack" if len(families) == 1 else "RequireDualStack"
    return {"kind": "Service", "apiVersion": "v1", "metadata": _meta(ns, name, labels),
            "spec": spec, "status": {"loadBalancer": {}}}

def endpoint_slice(ns: str, name: str, service: str, address_type: str = "IPv4",
                   endpoints: Sequence[Mapping[str, Any] | str] = (),
                   ports: Sequence[Mapping[str, Any]] = (),
                   labels: Mapping[str, str] | None = None) -> Obj:
    """A discovery.k8s.io/v1 EndpointSlice of `service`. An endpoint may be a bare address;
    conditions default to ready and serving. Ports default to protocol TCP."""
    eps = []
    for ep in endpoints:
        e: Obj = {"addresses": [ep]} if isinstance(ep, str) else dict(ep)
        e["conditions"] = {"ready": True, "serving": True, "terminating": False,
                           **e.get("conditions", {})}
        eps.append(e)
    lbls = {"kubernetes.io/service-name": service,
            "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
            **(labels or {})}
    return {"kind": "EndpointSlice", "apiVersion": f"{DISCOVERY_GROUP}/v1",
            "metadata": _meta(ns, name, lbls), "addressType": address_type, "endpoints": eps,
            "ports": [{"protocol": "TCP", **p} for p in ports]}

def endpoints(ns: str, name: str, subsets: Sequence[Mapping[str, Any]] = (),
              labels: Mapping[str, str] | None = None) -> Obj:
    """A core v1 Endpoints. Addresses may be bare IP strings; ports default to protocol TCP."""
    out = []
    for subset in subsets:
        s = dict(subset)
        for key in ("addresses", "notReadyAddresses"):
            if key in s:
                s[key] = [{"ip": a} if isinstance(a, str) else dict(a) for a in s[key]]
        s["ports"] = [{"protocol": "TCP", **p} for p in s.get("ports", ())]
        out.append(s)
    return {"kind": "Endpoints", "apiVersion": "v1", "metadata": _meta(ns, name, labels),
            "subsets": out}

def pod(ns: str, name: str, ip: str | None, ips: Sequence[str] | None = None,
        phase: str = "Running", labels: Mapping[str, str] | None = None,
        hostname: str | None = None, subdomain: str | None = None) -> Obj:
    """A v1 Pod with one container, Ready when Running. `ips` (dual-stack) defaults to [ip]."""
    spec: Obj = {"containers": [{"name": "main", "image": "registry.k8s.io/pause:3.9"}],
                 "nodeName": "node-1"}
    if hostname:
        spec["hostname"] = hostname
    if subdomain:
        spec["subdomain"] = subdomain
    all_ips = list(ips) if ips else [ip] if ip else []
    status: Obj = {"phase": phase, "conditions": [
        {"type": "Ready", "status": "True" if phase == "Running" else "False"}]}
    if all_ips:
        status["podIP"], status["podIPs"] = all_ips[0], [{"ip": i} for i in all_ips]
    return {"kind": "Pod", "apiVersion": "v1", "metadata": _meta(ns, name, labels),
            "spec": spec, "status": status}

def namespace(name: str, labels: Mapping[str, str] | None = None) -> Obj:
    """A v1 Namespace (Active), labelled kubernetes.io/metadata.name like a real one."""
    lbls = {"kubernetes.io/metadata.name": name, **(labels or {})}
    return {"kind": "Namespace", "apiVersion": "v1", "metadata": _meta(None, name, lbls),
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}
