"""The fake API server's store: objects, one resourceVersion counter, the event log, list
snapshots for paging, and the HTTP server's lifecycle (start, stop, down, up)."""

from __future__ import annotations

import contextlib
import copy
import socket
import ssl
import threading
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from kubefake.handler import APIServer
from kubefake.model import (
    HOST,
    RESOURCES,
    Event,
    Obj,
    Request,
    list_item_json,
    store_key,
    visible,
)


class FakeKubeAPI:
    """In-memory API server with one global resourceVersion counter and an event log."""

    def __init__(self, *, bookmark_interval: float = 0.3, max_watch_seconds: float = 5.0,
                 port: int = 0, tls: ssl.SSLContext | None = None) -> None:
        self.bookmark_interval = bookmark_interval  # seconds between BOOKMARKs, when allowed
        self.max_watch_seconds = max_watch_seconds  # server-side cap on every watch stream
        self._port = port
        self._tls = tls  # None: plain HTTP
        self._cond = threading.Condition()  # guards everything below
        self._rv = 100  # like a real cluster: "0" and small numbers are never live RVs
        self._compacted = 0  # watch RVs below this get 410; continue tokens are dropped
        self._objects: dict[tuple[str, str, str], Obj] = {}  # (resource, namespace, name)
        self._log: list[Event] = []
        # pinned lists for `continue`, by (resource, rv, namespace, labelSelector)
        self._snapshots: dict[tuple[str, int, str | None, str], list[Obj]] = {}
        # each stored object as a list item's JSON, made when it is stored (by id: objects
        # are never mutated once stored), so a list's cost stays out of a benchmark's time
        self._item_json: dict[int, tuple[Obj, bytes]] = {}
        self._requests: list[Request] = []
        self._watches: Counter[str] = Counter()  # open watch streams per resource
        self._epoch = 0  # bumped by stop()/set_down(True): open watches end
        self._started = False
        self._down: str | None = None  # None, "refuse" or "503"
        self._conns: set[socket.socket] = set()
        self._httpd: APIServer | None = None
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
            self._httpd = APIServer(self, self._port, self._tls)
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
        key = store_key(resource, meta.get("namespace"), meta["name"])
        with self._cond:
            old = self._objects.get(key)
            self._rv += 1
            meta["resourceVersion"] = str(self._rv)
            base = old["metadata"] if old else meta
            meta["uid"] = base.get("uid") or str(uuid.uuid4())
            meta["creationTimestamp"] = base.get("creationTimestamp") or time.strftime(
                "%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            self._objects[key] = new
            self._item_json.pop(id(old), None)
            self._item_json[id(new)] = (new, list_item_json(new))
            self._append(Event(self._rv, resource, "MODIFIED" if old else "ADDED", new, old))
            return self._rv

    def delete(self, resource: str, namespace: str | None, name: str) -> int:
        """Delete an object (DELETED event; KeyError if absent). Returns the new resourceVersion."""
        with self._cond:
            old = self._objects.pop(store_key(resource, namespace, name))
            self._item_json.pop(id(old), None)
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
            obj = self._objects.get(store_key(resource, namespace, name))
            return copy.deepcopy(obj) if obj else None

    def list_objects(self, resource: str, namespace: str | None = None) -> list[Obj]:
        with self._cond:
            return [copy.deepcopy(o) for o in self._sorted(resource) if visible(o, namespace, [])]

    def compact(self) -> int:
        """Drop the event log and list snapshots: older watch RVs and continue tokens get 410."""
        with self._cond:
            self._compacted = self._rv
            self._log.clear()
            self._snapshots.clear()
            self._cond.notify_all()
            return self._rv

    def _list_item(self, obj: Obj) -> bytes:
        """``obj`` as an item of a list response (call with _cond held)."""
        cached = self._item_json.get(id(obj))
        return cached[1] if cached and cached[0] is obj else list_item_json(obj)

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
