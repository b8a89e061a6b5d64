"""The only module that talks to the Kubernetes API: list, then watch, one thread each.

Each ``Watcher`` keeps one resource (in one namespace, or in all) and reports to a callback:

* ``Listed``: a complete, paged list at one resourceVersion. It replaces everything the
  watcher reported before, so objects deleted while we were not watching disappear too.
* ``Changed``: one object added, changed or gone, from the watch that follows the list.

The watch resumes from the last resourceVersion seen (events and BOOKMARKs) each time the
server ends the stream (``timeoutSeconds``) or the connection fails; only a 410 Gone
(resourceVersion too old) makes it list again. Errors are retried with exponential backoff
forever: the API server being down is never a reason to give up, and the consumer simply
keeps the last state it was given.

Objects are reduced at once to the slim dataclasses of ``records`` (see ``objects``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client, config
from kubernetes.watch.watch import iter_resp_lines
from tenacity import wait_exponential_jitter

from skydns.background import Background
from skydns.gcpause import collector_paused

from .objects import (
    ENDPOINT_SLICES,
    ENDPOINTS,
    PODS,
    SERVICES,
    SLIM,
    Changed,
    Event,
    Json,
    Key,
    Listed,
    Obj,
    Source,
    key_of,
)

log = logging.getLogger(__name__)


class Gone(Exception):
    """HTTP 410: the resourceVersion is too old; list again."""


class StreamError(Exception):
    """The watch stream said something we cannot use."""


@dataclass(frozen=True, slots=True)
class WatchSettings:
    label_selector: str = ""  # applies to Services only
    page_size: int = 500
    watch_timeout: float = 300.0  # timeoutSeconds asked of the server
    connect_timeout: float = 5.0
    list_timeout: float = 60.0
    max_backoff: float = 5.0


class KubeConfigError(Exception):
    """No usable kubeconfig or service account; the message says why."""


def api_client(kubeconfig: str | None) -> client.ApiClient:
    """A client from a kubeconfig file, or from the pod's service account when None."""
    try:
        if kubeconfig:
            api: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig
            )
            return api
        configuration = client.Configuration()
        config.load_incluster_config(  # type: ignore[no-untyped-call]
            client_configuration=configuration
        )
    except (config.ConfigException, OSError, ValueError, TypeError, KeyError) as exc:
        where = kubeconfig or "in-cluster service account (no --kubeconfig given)"
        raise KubeConfigError(f"{where}: {exc}") from None
    return client.ApiClient(configuration)


# -- the watcher ------------------------------------------------------------------------


@dataclass(slots=True)
class WatchStats:
    synced: bool = False  # a complete list has been delivered at least once
    lists: int = 0
    restarts: int = 0
    last_error: str = ""
    resource_version: str = ""


class Watcher:
    """List and watch one ``Source`` in a thread, reporting ``Event`` s to ``out``."""

    def __init__(
        self,
        api: client.ApiClient,
        source: Source,
        out: Callable[[Event], None],
        settings: WatchSettings = WatchSettings(),
        *,
        on_restart: Callable[[str, str], None] = lambda resource, reason: None,
    ) -> None:
        self.source = source
        self.out = out
        self.settings = settings
        self.on_restart = on_restart
        self.stats = WatchStats()
        self._slim = SLIM[source.resource]
        self._call = self._method(api, source)
        self._rv: str | None = None  # None: list first
        self._resp: Any = None
        self._thread = Background(f"watch-{source}", self._run)

    @staticmethod
    def _method(api: client.ApiClient, source: Source) -> Callable[..., Any]:
        core, discovery = client.CoreV1Api(api), client.DiscoveryV1Api(api)
        table: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
            SERVICES: (core.list_service_for_all_namespaces, core.list_namespaced_service),
            ENDPOINTS: (core.list_endpoints_for_all_namespaces, core.list_namespaced_endpoints),
            PODS: (core.list_pod_for_all_namespaces, core.list_namespaced_pod),
            ENDPOINT_SLICES: (discovery.list_endpoint_slice_for_all_namespaces,
                              discovery.list_namespaced_endpoint_slice),
        }
        every, namespaced = table[source.resource]
        if source.namespace is None:
            return every
        namespace = source.namespace
        return lambda **kw: namespaced(namespace, **kw)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        self._thread.stop(timeout, wake=self._cut)

    @property
    def alive(self) -> bool:
        return self._thread.alive

    # -- the loop ------------------------------------------------------------------------

    def _run(self) -> None:
        retrying = self._thread.retrying(
            Exception,
            wait_exponential_jitter(multiplier=0.2, max=self.settings.max_backoff, jitter=0.2),
            before_sleep=self._failed)
        while not self._thread.stopping:
            retrying(self._cycle)

    def _failed(self, retry_state: Any) -> None:
        self._thread.check()
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        reason = _describe(exc)
        if reason != self.stats.last_error:
            log.warning("%s: %s (keeping the last state, retrying)", self.source, reason)
        self.stats.last_error = reason
        self.stats.restarts += 1
        self.on_restart(self.source.resource, "error")

    def _cycle(self) -> None:
        """One list (if needed) and one watch stream, until the server ends it."""
        self._thread.check()
        if self._rv is None:
            self._list()
        try:
            self._watch()
        except Gone as exc:
            log.info("%s: %s; listing again", self.source, exc)
            self._rv = None
            self.stats.restarts += 1
            self.on_restart(self.source.resource, "expired")
            return
        if self.stats.last_error:
            log.info("%s: watching again", self.source)
            self.stats.last_error = ""

    def _selector(self) -> dict[str, Any]:
        if self.source.resource == SERVICES and self.settings.label_selector:
            return {"label_selector": self.settings.label_selector}
        return {}

    def _list(self) -> None:
        objects: dict[Key, Obj] = {}
        with collector_paused():  # decoded JSON and slim objects hold no reference cycles
            rv = self._pages(objects)
        self._rv = rv
        self.stats.resource_version = rv
        self.stats.lists += 1
        log.info("%s: listed %d objects at resourceVersion %s", self.source, len(objects), rv)
        self.out(Listed(self.source, objects, time.monotonic()))
        self.stats.synced = True

    def _pages(self, objects: dict[Key, Obj]) -> str:
        """Every page of the list, slimmed into ``objects``; the list's resourceVersion."""
        token: str | None = None
        rv = ""
        while True:
            kwargs: dict[str, Any] = {"limit": self.settings.page_size, **self._selector()}
            if token:
                kwargs["_continue"] = token
            try:
                body = self._request(kwargs, self.settings.list_timeout)
            except client.ApiException as exc:
                if exc.status == 410:
                    raise StreamError("list continue token expired") from None
                raise
            rv = rv or body["metadata"].get("resourceVersion", "")
            for item in body.get("items") or ():
                slim = self._slim(item)
                if slim is not None:
                    objects[key_of(item)] = slim
            token = body["metadata"].get("continue")
            if not token:
                return rv

    def _request(self, kwargs: dict[str, Any], read_timeout: float) -> Json:
        resp = self._call(**kwargs, _preload_content=False,
                          _request_timeout=(self.settings.connect_timeout, read_timeout))
        try:
            body: Json = json.loads(resp.data)
        finally:
            resp.release_conn()
        return body

    def _watch(self) -> None:
        timeout = max(1, int(self.settings.watch_timeout))
        started = time.monotonic()
        try:
            resp = self._call(
                watch=True, resource_version=self._rv, allow_watch_bookmarks=True,
                timeout_seconds=timeout, _preload_content=False,
                _request_timeout=(self.settings.connect_timeout, timeout + 15),
                **self._selector(),
            )
        except client.ApiException as exc:
            if exc.status == 410:
                raise Gone(str(exc.reason)) from None
            raise
        self._resp = resp
        try:
            for line in iter_resp_lines(resp):  # type: ignore[no-untyped-call]
                self._thread.check()
                if line:
                    self._event(json.loads(line))
        finally:
            self._resp = None
            resp.release_conn()
        if time.monotonic() - started < 0.25:  # a server ending every stream at once
            self._thread.pause(0.5)

    def _event(self, event: Json) -> None:
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise Gone(obj.get("message") or "resource version too old")
            raise StreamError(f"watch error {obj.get('code')}: {obj.get('message')}")
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if kind in ("ADDED", "MODIFIED", "DELETED"):
            slim = self._slim(obj) if kind != "DELETED" else None
            self.out(Changed(self.source, key_of(obj), slim, time.monotonic()))
        elif kind != "BOOKMARK":
            raise StreamError(f"unexpected watch event type {kind!r}")
        if rv:
            self._rv = rv
            self.stats.resource_version = rv

    def _cut(self) -> None:
        """Unblock a thread waiting on the watch stream (best effort)."""
        resp = self._resp
        sock = getattr(getattr(resp, "connection", None), "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _describe(exc: BaseException | None) -> str:
    if isinstance(exc, client.ApiException):
        return f"API error {exc.status}: {exc.reason}"
    if exc is None:
        return "unknown error"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:300]


def sources(namespaces: tuple[str, ...], endpoints_api: str, pods: bool) -> list[Source]:
    """What the bridge watches, given its options: one source per resource and namespace."""
    resources = [SERVICES, ENDPOINT_SLICES if endpoints_api == "endpointslices" else ENDPOINTS]
    if pods:
        resources.append(PODS)
    spaces: list[str | None] = list(namespaces) if namespaces else [None]
    return [Source(r, ns) for r in resources for ns in spaces]
