"""A prefix watch read from etcd's JSON gateway (``POST /v3/watch``); ``skydns.etcd`` opens
it for ``EtcdClient.watch`` (and reads keys through ``skydns.etcdrange``).

Why not the gRPC watch: at 1,000 changes a second (~120 responses) the etcd3 client's
watch cost 3.6-3.8% of a core with a callback doing nothing, spread over gRPC's channel
spin thread, its event-engine threads and etcd3's watch thread, each response a handful of
thread wake-ups taken from the thread answering queries. The gateway's stream is one
HTTP/1.1 response of JSON lines, read here by one blocking thread of ours: 1.4% for the
same watch (docs/benchmarks.md, "etcd churn"). The gateway is on by default on etcd's
client port (3.4 and later serve ``/v3``).

Semantics are those of the gRPC watch it replaces: the watch starts at a revision and is
created before ``open_watch`` returns (which raises ``EtcdError`` when no endpoint
creates it); each response is handed over as one ``WatchBatch``; a start revision
compacted away is reported as ``Compacted``, a watch etcd refuses or a stream that ends or
fails as ``EtcdError``, both through the callback, once, and nothing after ``cancel``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import http.client
import json
import logging
import socket
import ssl
import threading
from collections.abc import Sequence
from typing import Any

from skydns.etcdtypes import (
    Compacted,
    EtcdError,
    EtcdSettings,
    WatchBatch,
    WatchCallback,
    parse_endpoint,
)

log = logging.getLogger(__name__)

# The gateway spells bytes as base64 (the range pages in ``etcdrange`` too). Decoded by
# base64.b64decode without its Python wrapper (0.28 -> 0.16 µs a key or value): the
# gateway's strings are ASCII, and a bad one is a ValueError (binascii.Error) all the same.
b64decode = binascii.a2b_base64


def b64text(data: bytes) -> str:
    """Bytes as the gateway's JSON spells them."""
    return base64.b64encode(data).decode()


def tls_context(settings: EtcdSettings) -> ssl.SSLContext:
    """What the gRPC channel trusts and presents, for https endpoints."""
    ctx = ssl.create_default_context(cafile=settings.ca_file)
    if settings.cert_file:
        ctx.load_cert_chain(settings.cert_file, settings.key_file)
    return ctx


def ended(result: dict[str, Any]) -> EtcdError | None:
    """The error a watch response ends the watch with, if it does: etcd cancels a watch
    whose start revision was compacted, or that the user may not read."""
    if not result.get("canceled"):
        return None
    compacted = int(result.get("compact_revision", 0))
    if compacted:
        return Compacted(compacted)
    return EtcdError(f"watch canceled: {result.get('cancel_reason', 'no reason given')}")


def batch(result: dict[str, Any]) -> WatchBatch:
    """One watch response as a batch of (key, value or None for a delete, mod revision).
    The gateway leaves out fields at their defaults (a PUT's type, an empty value) and
    spells 64-bit numbers as strings."""
    out = WatchBatch(revision=int(result["header"].get("revision", 0)))
    append = out.events.append
    for ev in result.get("events", ()):
        kv = ev["kv"]
        value = None if ev.get("type") == "DELETE" else b64decode(kv.get("value", ""))
        append((b64decode(kv["key"]).decode("utf-8", "replace"), value, int(kv["mod_revision"])))
    return out


def _result(line: bytes) -> dict[str, Any]:
    """A line of the stream: a response, or the gateway's report of a gRPC error."""
    if not line:
        raise EtcdError("watch stream closed by etcd")
    msg = json.loads(line)
    if "result" not in msg:
        err = msg.get("error", msg)
        raise EtcdError(f"watch refused: {err.get('message', err)}")
    result: dict[str, Any] = msg["result"]
    return result


class GatewayWatch:
    """One watch stream, read on its own thread once created."""

    def __init__(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse,
                 callback: WatchCallback, refused: EtcdError | None) -> None:
        """``refused``: the watch was created and cancelled at once (reported from the
        thread, like any end of the watch)."""
        self._conn, self._resp, self._callback = conn, resp, callback
        self._cancelled = False
        self._thread = threading.Thread(target=self._run, args=(refused,), name="etcd-watch",
                                        daemon=True)
        self._thread.start()

    def cancel(self, timeout: float = 1.0) -> None:
        """Stop delivering and end the stream (etcd drops the watch with the connection).
        A shutdown, not a close, wakes the thread blocked reading the socket."""
        self._cancelled = True
        sock = self._conn.sock
        if sock is not None:
            # socket.socket's own: an SSLSocket's would drop its state under the reader.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _run(self, item: WatchBatch | EtcdError | None) -> None:
        try:
            while not isinstance(item, EtcdError):
                if item is not None and not self._cancelled:
                    self._callback(item)
                item = self._next()
            if not self._cancelled:
                self._callback(item)
        finally:
            self._conn.close()

    def _next(self) -> WatchBatch | EtcdError:
        """The next response; the end of the stream (or a cancel) as an error."""
        try:
            result = _result(self._resp.readline())
            return ended(result) or batch(result)
        except (OSError, ValueError, KeyError, http.client.HTTPException, EtcdError) as exc:
            return exc if isinstance(exc, EtcdError) else \
                EtcdError(f"watch stream failed: {type(exc).__name__}: {exc}")


def open_watch(endpoints: Sequence[str], settings: EtcdSettings, token: str | None,
               key: bytes, range_end: bytes, start_revision: int,
               callback: WatchCallback) -> GatewayWatch:
    """A watch of [key, range_end) from ``start_revision`` on the first endpoint that
    creates it; EtcdError naming the last failure when none does."""
    body = json.dumps({"create_request": {
        "key": b64text(key), "range_end": b64text(range_end),
        "start_revision": start_revision}})
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = token  # the gateway passes it on as the gRPC metadata
    error = EtcdError("no etcd endpoint")
    for url in endpoints:
        conn = connection(url, settings)
        try:
            conn.request("POST", "/v3/watch", body, headers)
            resp = conn.getresponse()
            if resp.status != 200:
                raise EtcdError(f"watch refused: HTTP {resp.status} {resp.read(200)!r}")
            first = _result(resp.readline())
            if not first.get("created"):  # a watch's first response says so
                raise EtcdError(f"watch not created: {first}")
            assert conn.sock is not None
            conn.sock.settimeout(None)  # a quiet prefix sends nothing: not a failure
            return GatewayWatch(conn, resp, callback, ended(first))
        except (OSError, ValueError, KeyError, http.client.HTTPException, EtcdError) as exc:
            conn.close()
            error = exc if isinstance(exc, EtcdError) else \
                EtcdError(f"watch on {url}: {type(exc).__name__}: {exc}")
            log.debug("etcd watch on %s failed: %s", url, error)
    raise error


def connection(url: str, settings: EtcdSettings) -> http.client.HTTPConnection:
    """A connection to one member's gateway (not yet connected)."""
    host, port, tls = parse_endpoint(url)
    if tls:
        return http.client.HTTPSConnection(host, port, timeout=settings.timeout,
                                           context=tls_context(settings))
    return http.client.HTTPConnection(host, port, timeout=settings.timeout)
