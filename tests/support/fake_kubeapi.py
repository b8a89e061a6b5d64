"""A small, faithful, stdlib-only fake Kubernetes API server for tests.

The real `kubernetes` client runs unchanged against it. Over HTTP/1.1 on 127.0.0.1 it serves
read-only get, list and watch for core v1 services, endpoints, pods and namespaces and for
discovery.k8s.io/v1 endpointslices:
* lists: `limit`/`continue` paging from a snapshot pinned at one resourceVersion (410 after
  `compact()`);
* watches: resourceVersion (none/"0" = current state as ADDED first), BOOKMARKs, `timeoutSeconds`,
  a server-side maximum duration, and an ERROR 410 Expired event for RVs older than `compact()`;
* `labelSelector` on lists and watches (`fieldSelector` is ignored).
Tests change the store directly (`upsert`, `delete`); other HTTP methods get 405.
With `tls` (a server-side ssl.SSLContext) it speaks HTTPS instead, as a real API server does to
in-cluster clients.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import contextlib
import copy
import json
import re
import socket
import ssl
import threading
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

__all__ = ["RESOURCES", "FakeKubeAPI", "Request", "Resource", "endpoint_slice", "endpoints",
           "label_match", "namespace", "parse_label_selector", "pod", "service"]

Obj = dict[str, Any]
Requirement = tuple[str, str, frozenset[str]]  # (key, "exists" | "!" | "in" | "notin", values)
HOST = "127.0.0.1"
_TRUE = ("1", "true", "True")
_GROUP = "discovery.k8s.io"
_HEALTH = ("/healthz", "/readyz", "/livez")


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
    Resource("endpointslices", "EndpointSlice", group=_GROUP),
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


class _APIError(Exception):
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


def _visible(obj: Obj, ns: str | None, reqs: Sequence[Requirement]) -> bool:
    meta = obj["metadata"]
    return ns in (None, meta.get("namespace")) and label_match(reqs, meta.get("labels") or {})


def _view(e: Event, ns: str | None, reqs: Sequence[Requirement]) -> tuple[str, Obj] | None:
    """The event as a watcher of namespace `ns` with selector `reqs` sees it, or None."""
    if e.type == "DELETED":
        return (e.type, e.obj) if _visible(e.obj, ns, reqs) else None
    was, now = e.old is not None and _visible(e.old, ns, reqs), _visible(e.obj, ns, reqs)
    if now:
        return ("MODIFIED" if was else "ADDED"), e.obj
    if was and e.old is not None:  # left the selector: the old content at the event's RV
        return "DELETED", {**e.old, "metadata": {**e.old["metadata"], "resourceVersion": str(e.rv)}}
    return None


def _key(resource: str, namespace: str | None, name: str) -> tuple[str, str, str]:
    return resource, (namespace or "default") if RESOURCES[resource].namespaced else "", name


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, api: FakeKubeAPI, port: int, tls: ssl.SSLContext | None) -> None:
        self.api = api
        super().__init__((HOST, port), _Handler)
        if tls is not None:  # the handshake then happens in each connection's own thread
            self.socket = tls.wrap_socket(self.socket, server_side=True,
                                          do_handshake_on_connect=False)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # connections cut by stop()/set_down() are expected


class FakeKubeAPI:
    """In-memory API server with one global resourceVersion counter and an event log."""

    def __init__(self, *, bookmark_interval: float = 0.3, max_watch_seconds: float = 5.0,
                 port: int = 0, tls: ssl.SSLContext | None = None) -> None:
        self.bookmark_interval = bookmark_interval  # seconds between BOOKMARKs, when allowed
        self.max_watch_seconds = max_watch_seconds  # server-side cap on every watch stream
        self._port = port
        self._tls = tls
        self._cond = threading.Condition()  # guards everything below
        self._rv = 100  # like a real cluster: "0" and small numbers are never live RVs
        self._compacted = 0  # watch RVs below this get 410; continue tokens are dropped
        self._objects: dict[tuple[str, str, str], Obj] = {}  # (resource, namespace, name)
        self._log: list[Event] = []
        self._snapshots: dict[tuple[str, int], list[Obj]] = {}  # pinned lists for `continue`
        self._requests: list[Request] = []
        self._watches: Counter[str] = Counter()  # open watch streams per resource
        self._epoch = 0  # bumped by stop()/set_down(True): open watches end
        self._started = False
        self._down: str | None = None  # None, "refuse" or "503"
        self._conns: set[socket.socket] = set()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # ----- lifecycle -----
    def start(self) -> FakeKubeAPI:
        with self._cond:
            self._started = True
        self._reconcile_listener()
        return self

    def stop(self) -> None:
        """Stop listening and cut every open connection (watches end at once)."""
        with self._cond:
            self._started = False
        self._cut()

    def __enter__(self) -> FakeKubeAPI:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"{'https' if self._tls else 'http'}://{HOST}:{self._port}"

    def set_down(self, down: bool = True, *, refuse: bool = True) -> None:
        """Simulate an unavailable API server: open connections (and watches) are cut, then new
        connections are refused (`refuse=True`) or answered 503. `False` recovers, same port."""
        with self._cond:
            self._down = ("refuse" if refuse else "503") if down else None
        if down:
            self._cut()
        else:
            self._reconcile_listener()

    def _cut(self) -> None:
        with self._cond:
            self._epoch += 1
            self._cond.notify_all()
        self._reconcile_listener()
        with self._cond:
            conns = list(self._conns)
        for sock in conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _reconcile_listener(self) -> None:
        want = self._started and self._down != "refuse"
        if want and self._httpd is None:
            self._httpd = _Server(self, self._port, self._tls)
            self._port = self._httpd.server_address[1]
            self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,),
                                            name=f"fake-kubeapi-{self._port}", daemon=True)
            self._thread.start()
        elif not want and self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            if self._thread is not None:
                self._thread.join(5)
            self._httpd = self._thread = None

    # ----- store (test-facing) -----
    @property
    def resource_version(self) -> int:
        with self._cond:
            return self._rv

    def upsert(self, resource: str, obj: Mapping[str, Any]) -> int:
        """Create or replace an object (ADDED/MODIFIED event). Returns the new resourceVersion.

        Sets kind, apiVersion, metadata.namespace ("default" if unset), resourceVersion, and a
        uid and creationTimestamp kept across updates (a re-created object gets a new uid)."""
        res = RESOURCES[resource]
        new = copy.deepcopy(dict(obj))
        meta = new.setdefault("metadata", {})
        if res.namespaced:
            meta["namespace"] = meta.get("namespace") or "default"
        else:
            meta.pop("namespace", None)
        new["kind"], new["apiVersion"] = res.kind, res.api_version
        key = _key(resource, meta.get("namespace"), meta["name"])
        with self._cond:
            old = self._objects.get(key)
            self._rv += 1
            meta["resourceVersion"] = str(self._rv)
            base = old["metadata"] if old else meta
            meta["uid"] = base.get("uid") or str(uuid.uuid4())
            meta["creationTimestamp"] = base.get("creationTimestamp") or time.strftime(
                "%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            self._objects[key] = new
            self._append(Event(self._rv, resource, "MODIFIED" if old else "ADDED", new, old))
            return self._rv

    def delete(self, resource: str, namespace: str | None, name: str) -> int:
        """Delete an object (DELETED event; KeyError if absent). Returns the new resourceVersion."""
        with self._cond:
            old = self._objects.pop(_key(resource, namespace, name))
            self._rv += 1
            gone = copy.deepcopy(old)
            gone["metadata"]["resourceVersion"] = str(self._rv)
            self._append(Event(self._rv, resource, "DELETED", gone, old))
            return self._rv

    def _append(self, event: Event) -> None:
        self._log.append(event)
        self._cond.notify_all()

    def get(self, resource: str, namespace: str | None, name: str) -> Obj | None:
        with self._cond:
            obj = self._objects.get(_key(resource, namespace, name))
            return copy.deepcopy(obj) if obj else None

    def list_objects(self, resource: str, namespace: str | None = None) -> list[Obj]:
        with self._cond:
            return [copy.deepcopy(o) for o in self._sorted(resource) if _visible(o, namespace, [])]

    def compact(self) -> int:
        """Drop the event log and list snapshots: older watch RVs and continue tokens get 410."""
        with self._cond:
            self._compacted = self._rv
            self._log.clear()
            self._snapshots.clear()
            self._cond.notify_all()
            return self._rv

    def _sorted(self, resource: str) -> list[Obj]:
        return [o for (r, _, _), o in sorted(self._objects.items()) if r == resource]

    # ----- observation (test-facing) -----
    @property
    def requests(self) -> list[Request]:
        with self._cond:
            return list(self._requests)

    def count(self, verb: str | None = None, resource: str | None = None,
              namespace: str | None = None) -> int:
        """How many requests matched (None matches anything)."""
        return sum(1 for r in self.requests if verb in (None, r.verb)
                   and resource in (None, r.resource) and namespace in (None, r.namespace))

    def reset_requests(self) -> None:
        with self._cond:
            self._requests.clear()

    def open_watches(self, resource: str | None = None) -> int:
        with self._cond:
            return self._watches[resource] if resource else sum(self._watches.values())

    def wait_for_watches(self, count: int = 1, resource: str | None = None,
                         timeout: float = 5.0) -> bool:
        """Wait until at least `count` watch streams (on `resource`) are open."""
        with self._cond:
            return self._cond.wait_for(lambda: self.open_watches(resource) >= count, timeout)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # as a real API server: no Nagle stalls on watch events

    @property
    def api(self) -> FakeKubeAPI:
        return cast(_Server, self.server).api

    def setup(self) -> None:
        super().setup()
        with self.api._cond:
            self.api._conns.add(self.connection)

    def finish(self) -> None:
        with self.api._cond:
            self.api._conns.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, code: int, body: Obj | str) -> None:
        text = body if isinstance(body, str) else json.dumps(body)
        self.send_response(code)
        self.send_header("Content-Type", "text/plain" if text is body else "application/json")
        self.send_header("Content-Length", str(len(text.encode())))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(text.encode())

    def _event(self, type_: str, obj: Obj) -> None:
        data = json.dumps({"type": type_, "object": obj}).encode() + b"\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))  # one chunk per event

    def _record(self, verb: str, path: str, res: Resource | None = None, ns: str | None = None,
                query: dict[str, str] | None = None) -> None:
        with self.api._cond:
            self.api._requests.append(
                Request(self.command, verb, path, res.name if res else None, ns, query or {},
                        _bearer(self.headers.get("Authorization", ""))))

    def _not_allowed(self) -> None:
        self.close_connection = True  # the request body is not read
        self._record(self.command.lower(), urlsplit(self.path).path)
        self._send(405, _APIError(405, "MethodNotAllowed", "this fake API is read-only").status)

    do_POST = do_PUT = do_PATCH = do_DELETE = _not_allowed

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        route = _route(url.path)
        res, ns, name = route or (None, None, None)
        found = None if res else _discovery(url.path, self.api.port)
        watch = query.get("watch") in _TRUE
        verb = ("get" if name else "watch" if watch else "list") if res else (
            "discovery" if found or url.path in _HEALTH else "unknown")
        with self.api._cond:
            down, started = self.api._down, self.api._started
        if down == "refuse" or not started:  # raced with set_down()/stop(): drop the connection
            self.close_connection = True
            return
        self._record(verb, url.path, res, ns, query)
        try:
            if down:
                self.close_connection = True
                raise _APIError(503, "ServiceUnavailable", "the fake API server is down")
            if res is None:
                if found is None and url.path not in _HEALTH:
                    raise _APIError(404, "NotFound", "the server could not find the resource")
                self._send(200, found or "ok")
                return
            try:
                reqs = parse_label_selector(query.get("labelSelector", ""))
            except ValueError as exc:
                raise _APIError(400, "BadRequest", str(exc)) from None
            if name is not None:
                with self.api._cond:
                    obj = self.api._objects.get(_key(res.name, ns, name))
                if obj is None:
                    raise _APIError(404, "NotFound", f'{res.name} "{name}" not found')
                self._send(200, obj)
            elif watch:
                self._watch(res, ns, query, reqs)
            else:
                self._list(res, ns, query, reqs)
        except _APIError as exc:
            self._send(exc.status["code"], exc.status)
        except OSError:  # the client went away, or stop()/set_down() cut the connection
            self.close_connection = True

    def _list(self, res: Resource, ns: str | None, query: dict[str, str],
              reqs: list[Requirement]) -> None:
        api = self.api
        token = query.get("continue")
        try:
            limit = int(query.get("limit") or 0)
            pinned = json.loads(base64.urlsafe_b64decode(token)) if token else {}
            rv, offset = int(pinned.get("rv", 0)), int(pinned.get("offset", 0))
        except (ValueError, TypeError, AttributeError, binascii.Error):
            raise _APIError(400, "BadRequest", "invalid limit or continue parameter") from None
        with api._cond:
            if token:
                snapshot = api._snapshots.get((res.name, rv))
                if snapshot is None:
                    raise _APIError(410, "Expired", "The provided continue parameter is too old "
                                    "to display a consistent list result.")
            else:
                rv, snapshot = api._rv, api._sorted(res.name)
            items = [o for o in snapshot if _visible(o, ns, reqs)]
            page = items[offset: offset + limit] if limit else items[offset:]
            left = len(items) - offset - len(page)
            meta: Obj = {"resourceVersion": str(rv)}
            if left > 0:
                api._snapshots[(res.name, rv)] = snapshot
                cont = json.dumps({"rv": rv, "offset": offset + len(page)}).encode()
                meta["continue"] = base64.urlsafe_b64encode(cont).decode()
                if not reqs:  # like the real apiserver: no count when a selector is used
                    meta["remainingItemCount"] = left
        # items in a real list response carry no kind/apiVersion
        items = [{k: v for k, v in o.items() if k not in ("kind", "apiVersion")} for o in page]
        self._send(200, {"kind": f"{res.kind}List", "apiVersion": res.api_version,
                         "metadata": meta, "items": items})

    def _watch(self, res: Resource, ns: str | None, query: dict[str, str],
               reqs: list[Requirement]) -> None:
        api = self.api
        try:
            timeout = float(query.get("timeoutSeconds") or 0) or float("inf")  # 0: none
            pos = int(query.get("resourceVersion") or 0)
        except ValueError:
            raise _APIError(400, "BadRequest", "bad resourceVersion or timeoutSeconds") from None
        start = time.monotonic()
        deadline = start + min(timeout, api.max_watch_seconds)
        interval = max(api.bookmark_interval, 0.01)
        bookmarks = query.get("allowWatchBookmarks") in _TRUE
        next_bookmark = start + interval if bookmarks else float("inf")
        with api._cond:
            epoch = api._epoch
            initial = [] if pos else [o for o in api._sorted(res.name) if _visible(o, ns, reqs)]
            pos = pos or api._rv
            api._watches[res.name] += 1
            api._cond.notify_all()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for obj in initial:
                self._event("ADDED", obj)
            while True:
                with api._cond:
                    while True:
                        if api._epoch != epoch:  # stop() or set_down(): cut the stream
                            self.close_connection = True
                            return
                        i = bisect.bisect_right(api._log, pos, key=lambda e: e.rv)
                        now = time.monotonic()
                        if (pos < api._compacted or i < len(api._log)
                                or now >= min(deadline, next_bookmark)):
                            break
                        api._cond.wait(min(deadline, next_bookmark) - now)
                    expired = pos < api._compacted
                    compacted = api._compacted
                    views = [] if expired else [_view(e, ns, reqs) for e in api._log[i:]
                                                if e.resource == res.name]
                    pos = pos if expired else api._rv
                if expired:
                    message = f"too old resource version: {pos} ({compacted})"
                    self._event("ERROR", _APIError(410, "Expired", message).status)
                    break
                for view in views:
                    if view:
                        self._event(*view)
                if now >= next_bookmark:
                    self._event("BOOKMARK", {"kind": res.kind, "apiVersion": res.api_version,
                                             "metadata": {"resourceVersion": str(pos)}})
                    next_bookmark = now + interval
                if now >= deadline:
                    break
            self.wfile.write(b"0\r\n\r\n")  # clean end of the stream; the connection stays usable
        finally:
            with api._cond:
                api._watches[res.name] -= 1


def _route(path: str) -> tuple[Resource, str | None, str | None] | None:
    """(resource, namespace, name) for a resource path, else None."""
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        group, rest = "", parts[2:]
    elif parts[:3] == ["apis", _GROUP, "v1"]:
        group, rest = _GROUP, parts[3:]
    else:
        return None
    ns = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        ns, rest = rest[1], rest[2:]
    res = RESOURCES.get(rest[0]) if 1 <= len(rest) <= 2 else None
    if res is None or res.group != group or (ns is not None and not res.namespaced):
        return None
    name = rest[1] if len(rest) == 2 else None
    return None if name is not None and ns is None and res.namespaced else (res, ns, name)


def _bearer(authorization: str) -> str | None:
    scheme, _, token = authorization.partition(" ")
    return token if scheme.lower() == "bearer" and token else None


def _discovery(path: str, port: int) -> Obj | None:
    gv = {"groupVersion": f"{_GROUP}/v1", "version": "v1"}
    docs: dict[str, Obj] = {
        "/version": {"major": "1", "minor": "32", "gitVersion": "v1.32.0-fake", "gitCommit": "0",
                     "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
                     "goVersion": "go1.23", "compiler": "gc", "platform": "linux/amd64"},
        "/api": {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": f"{HOST}:{port}"}]},
        "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
            {"name": _GROUP, "versions": [gv], "preferredVersion": gv}]},
    }
    return docs.get(path.rstrip("/") or "/")


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
    return {"kind": "EndpointSlice", "apiVersion": f"{_GROUP}/v1",
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
