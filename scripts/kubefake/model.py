"""The fake API's data model: resources it serves, stored events, recorded requests,
Kubernetes-style errors, and label selectors with Kubernetes' semantics."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]

Requirement = tuple[str, str, frozenset[str]]  # (key, "exists" | "!" | "in" | "notin", values)

HOST = "127.0.0.1"

TRUE_VALUES = ("1", "true", "True")

DISCOVERY_GROUP = "discovery.k8s.io"

HEALTH_PATHS = ("/healthz", "/readyz", "/livez")

@dataclass(frozen=True)
class Resource:
    name: str  # plural, as in the URL
    kind: str
    group: str = ""
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/v1" if self.group else "v1"

RESOURCES: dict[str, Resource] = {r.name: r for r in (
    Resource("services", "Service"),
    Resource("endpoints", "Endpoints"),
    Resource("pods", "Pod"),
    Resource("namespaces", "Namespace", namespaced=False),
    Resource("endpointslices", "EndpointSlice", group=DISCOVERY_GROUP),
)}

@dataclass(frozen=True)
class Event:
    rv: int
    resource: str
    type: str  # ADDED, MODIFIED or DELETED
    obj: Obj  # never mutated once stored
    old: Obj | None  # previous state, for label-selector transitions

@dataclass(frozen=True)
class Request:
    """One HTTP request. verb: list, watch, get, discovery, unknown, or the lower-cased method."""

    method: str
    verb: str
    path: str
    resource: str | None
    namespace: str | None
    query: dict[str, str]
    token: str | None = None  # the bearer token presented, if any

class APIError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {},
                            "status": "Failure", "message": message, "reason": reason, "code": code}

def parse_label_selector(text: str) -> list[Requirement]:
    """Parse `a=b`, `a==b`, `a!=b`, `a`, `!a`, `a in (x,y)`, `a notin (x)`, comma-separated."""
    key, val = r"[A-Za-z0-9][-A-Za-z0-9_./]*", r"[-A-Za-z0-9_.]*"
    reqs: list[Requirement] = []
    for term in re.split(r",(?![^()]*\))", text) if text.strip() else []:
        if m := re.fullmatch(rf"\s*(!?)\s*({key})\s*", term):
            reqs.append((m[2], "!" if m[1] else "exists", frozenset()))
        elif m := re.fullmatch(rf"\s*({key})\s*(==|=|!=)\s*({val})\s*", term):
            reqs.append((m[1], "notin" if m[2] == "!=" else "in", frozenset([m[3]])))
        elif m := re.fullmatch(rf"\s*({key})\s+(in|notin)\s*\(([^()]*)\)\s*", term):
            reqs.append((m[1], m[2], frozenset(v.strip() for v in m[3].split(","))))
        else:
            raise ValueError(f"unable to parse requirement: {term!r}")
    return reqs

def label_match(reqs: Sequence[Requirement], labels: Mapping[str, str]) -> bool:
    """Kubernetes semantics: `a!=b` and `a notin (…)` also match objects without label `a`."""
    return all(key in labels if op == "exists" else key not in labels if op == "!"
               else (labels.get(key) in vals) == (op == "in") for key, op, vals in reqs)

def visible(obj: Obj, ns: str | None, reqs: Sequence[Requirement]) -> bool:
    meta = obj["metadata"]
    return ns in (None, meta.get("namespace")) and label_match(reqs, meta.get("labels") or {})

def watcher_view(e: Event, ns: str | None,
                 reqs: Sequence[Requirement]) -> tuple[str, Obj] | None:
    """The event as a watcher of namespace `ns` with selector `reqs` sees it, or None."""
    if e.type == "DELETED":
        return (e.type, e.obj) if visible(e.obj, ns, reqs) else None
    was, now = e.old is not None and visible(e.old, ns, reqs), visible(e.obj, ns, reqs)
    if now:
        return ("MODIFIED" if was else "ADDED"), e.obj
    if was and e.old is not None:  # left the selector: the old content at the event's RV
        return "DELETED", {**e.old, "metadata": {**e.old["metadata"], "resourceVersion": str(e.rv)}}
    return None

def list_item_json(obj: Obj) -> bytes:
    """An object as an item of a list response: a real API server leaves kind/apiVersion out."""
    return json.dumps({k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}).encode()

def store_key(resource: str, namespace: str | None, name: str) -> tuple[str, str, str]:
    return resource, (namespace or "default") if RESOURCES[resource].namespaced else "", name
