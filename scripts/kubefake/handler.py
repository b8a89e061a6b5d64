"""The fake API server's HTTP side: routing, get, paged list and watch streams (BOOKMARKs,
timeouts, 410 Expired), discovery, 405 for anything but GET."""

from __future__ import annotations

import base64
import binascii
import bisect
import contextlib
import json
import ssl
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qs, urlsplit

from kubefake.model import (
    DISCOVERY_GROUP,
    HEALTH_PATHS,
    HOST,
    RESOURCES,
    TRUE_VALUES,
    APIError,
    Obj,
    Request,
    Requirement,
    Resource,
    parse_label_selector,
    store_key,
    visible,
    watcher_view,
)

if TYPE_CHECKING:  # the store imports this module to start its server
    from kubefake.api import FakeKubeAPI


class APIServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, api: FakeKubeAPI, port: int, tls: ssl.SSLContext | None) -> None:
        self.api = api
        super().__init__((HOST, port), _Handler)
        if tls is not None:  # the handshake then happens in each connection's own thread
            self.socket = tls.wrap_socket(self.socket, server_side=True,
                                          do_handshake_on_connect=False)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # connections cut by stop()/set_down() are expected

class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # as a real API server: no Nagle stalls on watch events

    @property
    def api(self) -> FakeKubeAPI:
        return cast(APIServer, self.server).api

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

    def _send(self, code: int, body: Obj | str | bytes) -> None:
        """A JSON object (given as such or already encoded), or plain text (str)."""
        data = body if isinstance(body, bytes) else (
            body if isinstance(body, str) else json.dumps(body)).encode()
        self.send_response(code)
        self.send_header("Content-Type",
                         "text/plain" if isinstance(body, str) else "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

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
        self._send(405, APIError(405, "MethodNotAllowed", "this fake API is read-only").status)

    do_POST = do_PUT = do_PATCH = do_DELETE = _not_allowed

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        route = _route(url.path)
        res, ns, name = route or (None, None, None)
        found = None if res else _discovery(url.path, self.api.port)
        watch = query.get("watch") in TRUE_VALUES
        verb = ("get" if name else "watch" if watch else "list") if res else (
            "discovery" if found or url.path in HEALTH_PATHS else "unknown")
        with self.api._cond:
            down, started = self.api._down, self.api._started
        if down == "refuse" or not started:  # raced with set_down()/stop(): drop the connection
            self.close_connection = True
            return
        self._record(verb, url.path, res, ns, query)
        try:
            if down:
                self.close_connection = True
                raise APIError(503, "ServiceUnavailable", "the fake API server is down")
            if res is None:
                if found is None and url.path not in HEALTH_PATHS:
                    raise APIError(404, "NotFound", "the server could not find the resource")
                self._send(200, found or "ok")
                return
            try:
                reqs = parse_label_selector(query.get("labelSelector", ""))
            except ValueError as exc:
                raise APIError(400, "BadRequest", str(exc)) from None
            if name is not None:
                with self.api._cond:
                    obj = self.api._objects.get(store_key(res.name, ns, name))
                if obj is None:
                    raise APIError(404, "NotFound", f'{res.name} "{name}" not found')
                self._send(200, obj)
            elif watch:
                self._watch(res, ns, query, reqs)
            else:
                self._list(res, ns, query, reqs)
        except APIError as exc:
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
            raise APIError(400, "BadRequest", "invalid limit or continue parameter") from None
        with api._cond:
            if token:
                items = api._snapshots.get((res.name, rv, ns, query.get("labelSelector", "")))
                if items is None:
                    raise APIError(410, "Expired", "The provided continue parameter is too old "
                                    "to display a consistent list result.")
            else:
                rv = api._rv
                items = [o for o in api._sorted(res.name) if visible(o, ns, reqs)]
            page = items[offset: offset + limit] if limit else items[offset:]
            left = len(items) - offset - len(page)
            meta: Obj = {"resourceVersion": str(rv)}
            if left > 0:  # the filtered list is kept: each page costs its size, not the list's
                api._snapshots[(res.name, rv, ns, query.get("labelSelector", ""))] = items
                cont = json.dumps({"rv": rv, "offset": offset + len(page)}).encode()
                meta["continue"] = base64.urlsafe_b64encode(cont).decode()
                if not reqs:  # like the real apiserver: no count when a selector is used
                    meta["remainingItemCount"] = left
            body = b",".join(api._list_item(o) for o in page)
        head = json.dumps({"kind": f"{res.kind}List", "apiVersion": res.api_version,
                           "metadata": meta})
        self._send(200, head[:-1].encode() + b',"items":[' + body + b"]}")

    def _watch(self, res: Resource, ns: str | None, query: dict[str, str],
               reqs: list[Requirement]) -> None:
        api = self.api
        try:
            timeout = float(query.get("timeoutSeconds") or 0) or float("inf")  # 0: none
            pos = int(query.get("resourceVersion") or 0)
        except ValueError:
            raise APIError(400, "BadRequest", "bad resourceVersion or timeoutSeconds") from None
        start = time.monotonic()
        deadline = start + min(timeout, api.max_watch_seconds)
        interval = max(api.bookmark_interval, 0.01)
        bookmarks = query.get("allowWatchBookmarks") in TRUE_VALUES
        next_bookmark = start + interval if bookmarks else float("inf")
        with api._cond:
            epoch = api._epoch
            initial = [] if pos else [o for o in api._sorted(res.name) if visible(o, ns, reqs)]
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
                    views = [] if expired else [watcher_view(e, ns, reqs)
                                                for e in api._log[i:] if e.resource == res.name]
                    pos = pos if expired else api._rv
                if expired:
                    message = f"too old resource version: {pos} ({compacted})"
                    self._event("ERROR", APIError(410, "Expired", message).status)
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


def _bearer(authorization: str) -> str | None:
    scheme, _, token = authorization.partition(" ")
    return token if scheme.lower() == "bearer" and token else None


def _route(path: str) -> tuple[Resource, str | None, str | None] | None:
    """(resource, namespace, name) for a resource path, else None."""
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        group, rest = "", parts[2:]
    elif parts[:3] == ["apis", DISCOVERY_GROUP, "v1"]:
        group, rest = DISCOVERY_GROUP, parts[3:]
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

def _discovery(path: str, port: int) -> Obj | None:
    gv = {"groupVersion": f"{DISCOVERY_GROUP}/v1", "version": "v1"}
    docs: dict[str, Obj] = {
        "/version": {"major": "1", "minor": "32", "gitVersion": "v1.32.0-fake", "gitCommit": "0",
                     "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
                     "goVersion": "go1.23", "compiler": "gc", "platform": "linux/amd64"},
        "/api": {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": f"{HOST}:{port}"}]},
        "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
            {"name": DISCOVERY_GROUP, "versions": [gv], "preferredVersion": gv}]},
    }
    return docs.get(path.rstrip("/") or "/")
