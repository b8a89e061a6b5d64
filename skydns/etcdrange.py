"""Key reads from etcd's JSON gateway (``POST /v3/kv/range``), with its authentication;
``skydns.etcd`` reads through it, the only module that uses it.

Why not gRPC: a serving skyserve only reads and watches, and loading the ``grpc`` module
(its ~10 MiB core library, its allocations, its threads) cost ~16 MiB of the 100 MiB a
100,000-record server may use (docs/benchmarks.md). The gateway is on by default on etcd's
client port (3.4 and later serve ``/v3``).

The gateway spells 64-bit numbers as strings, bytes as base64, and leaves out fields at
their defaults. It reports a gRPC error as an HTTP error whose JSON body holds the gRPC
code and message. A range's keys are decoded one at a time from the response text, as the
caller takes them: a page of 250,000 keys parsed at once would be ~250 MiB of dicts.
"""

from __future__ import annotations

import http.client
import json
import logging
import re
import threading
from collections.abc import Iterator
from typing import Any

from skydns.etcdgateway import b64decode, b64text, connection
from skydns.etcdtypes import EtcdError, EtcdSettings, KeyValue

log = logging.getLogger(__name__)

_decode_object = json.JSONDecoder().raw_decode
_KVS = re.compile(r'"kvs"\s*:\s*\[')
_BETWEEN = ", \t\r\n"  # what may separate two objects of an array

# gRPC codes after which another member may do better (etcd3's failover switched on these
# too): the member is down, cut off from its leader, or too slow.
_UNAVAILABLE, _DEADLINE_EXCEEDED, _UNAUTHENTICATED = 14, 4, 16
_CODES = ("OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
          "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
          "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
          "UNAUTHENTICATED")
_TRANSPORT = (OSError, http.client.HTTPException)


# What decoding a response may raise when it is not what etcd sends.
_BAD_RESPONSE = (ValueError, KeyError, TypeError, AttributeError)


def _bad_response(exc: Exception) -> EtcdError:
    return EtcdError(f"unexpected response from etcd: {type(exc).__name__}: {exc}")


class _Retry(EtcdError):
    """A failure on one member: try the next."""


def prefix_range_end(prefix: bytes) -> bytes:
    """The end of the range of every key starting with ``prefix`` (etcd's rule: the prefix
    with its last byte below 0xff incremented, what follows dropped)."""
    for i in reversed(range(len(prefix))):
        if prefix[i] < 0xFF:
            return prefix[:i] + bytes((prefix[i] + 1,))
    return b"\0"  # all keys


class RangePage:
    """One range response: its header's revision, whether more keys follow, and its keys
    decoded as they are taken (a malformed one raises EtcdError). ``count`` and ``size``
    (bytes of keys and values) cover the keys taken so far."""

    def __init__(self, body: bytes) -> None:
        text = body.decode()
        kvs = _KVS.search(text)  # the header holds only numbers: it cannot hold this
        if kvs is None:
            head = tail = json.loads(text)
            self._text, self._pos, self._end = "", 0, 0
        else:  # RangeResponse's fields in proto order: header, kvs, more, count
            self._end = text.rfind("]")
            head = json.loads(text[: kvs.start()].rstrip().rstrip(",") + "}")
            tail = json.loads("{" + text[self._end + 1 :].lstrip().lstrip(","))
            self._text, self._pos = text, kvs.end()
        header = head.get("header", {})
        self.header = {k: int(header.get(k, 0))
                       for k in ("cluster_id", "member_id", "revision", "raft_term")}
        self.revision = self.header["revision"]
        self.more = bool(tail.get("more", False))
        self.count, self.size = 0, 0

    def following(self) -> bytes | None:
        """Where the next page starts (just after this one's last key), None when no key
        follows; known before the keys are taken, so that the next page can be asked for
        while this one is digested. A key-value object holds no other object and its
        strings no brace, so the last object starts at the last brace."""
        last = self._text.rfind("{", self._pos, self._end)
        if not self.more or last < 0:
            return None
        return b64decode(_decode_object(self._text, last)[0]["key"]) + b"\0"

    def __iter__(self) -> Iterator[KeyValue]:
        text, end = self._text, self._end
        while True:
            pos = self._pos
            while pos < end and text[pos] in _BETWEEN:
                pos += 1
            if pos >= end:
                self._text = ""  # the response's memory goes with the last key
                return
            try:
                kv, self._pos = _decode_object(text, pos)
                key, value = b64decode(kv["key"]), b64decode(kv.get("value", ""))
                mod_revision, lease = int(kv.get("mod_revision", 0)), int(kv.get("lease", 0))
            except _BAD_RESPONSE as exc:
                raise _bad_response(exc) from exc
            self.count += 1
            self.size += len(key) + len(value)
            yield KeyValue(key.decode("utf-8", "replace"), value, mod_revision, lease)


class Gateway:
    """Requests to the members' gateways, from the member that last answered; the next
    one is tried when a member cannot be reached or is unavailable. One keep-alive
    connection (and, with a user, one auth token: etcd's simple tokens are per member) per
    member. Safe to share between threads (one request at a time)."""

    def __init__(self, settings: EtcdSettings) -> None:
        self.settings = settings
        self._order = list(settings.endpoints)  # the member in use first
        self._conns: dict[str, http.client.HTTPConnection] = {}
        self._tokens: dict[str, str] = {}
        self._lock = threading.Lock()

    def members(self) -> list[str]:
        """The endpoints, the one that answered last first."""
        return list(self._order)

    def token(self) -> str | None:
        """The auth token of the member in use (for a watch there); None without a user."""
        with self._lock:
            return self._token(self._order[0]) if self.settings.username else None

    def range(self, key: bytes, range_end: bytes = b"", **options: int | bool) -> RangePage:
        """``POST /v3/kv/range``; ``options`` are RangeRequest's (limit, revision,
        keys_only, min_mod_revision...), left out when false."""
        request: dict[str, Any] = {"key": b64text(key)}
        if range_end:
            request["range_end"] = b64text(range_end)
        request.update((k, v) for k, v in options.items() if v)
        body = self.post("/v3/kv/range", request)
        try:
            return RangePage(body)
        except _BAD_RESPONSE as exc:
            raise _bad_response(exc) from exc

    def post(self, path: str, request: dict[str, Any]) -> bytes:
        """The body of a successful response from the first member that gives one."""
        body = json.dumps(request)
        with self._lock:
            error: EtcdError = EtcdError("no etcd endpoint")
            for url in list(self._order):
                try:
                    data = self._post(url, path, body)
                except _Retry as exc:
                    self._drop(url)
                    error = EtcdError(f"{url}: {exc}")
                    log.debug("etcd %s on %s failed: %s", path, url, exc)
                    continue
                if url != self._order[0]:
                    self._order.remove(url)
                    self._order.insert(0, url)
                return data
            raise error

    def close(self) -> None:
        with self._lock:
            for url in list(self._conns):
                self._drop(url)

    def _post(self, url: str, path: str, body: str, fresh_token: bool = False) -> bytes:
        headers = {"Content-Type": "application/json"}
        token = self._token(url) if self.settings.username else None
        if token:
            headers["Authorization"] = token
        status, data = self._send(url, path, body, headers)
        if status == 200:
            return data
        code, message = _error(status, data)
        if code == _UNAUTHENTICATED and token and not fresh_token:
            self._tokens.pop(url, None)  # expired: a simple token lives 5 minutes unused
            return self._post(url, path, body, fresh_token=True)
        if code in (_UNAVAILABLE, _DEADLINE_EXCEEDED) or status >= 502:
            raise _Retry(message)
        raise EtcdError(message)

    def _send(self, url: str, path: str, body: str,
              headers: dict[str, str]) -> tuple[int, bytes]:
        conn = self._conns.get(url)
        if conn is None:
            conn = self._conns[url] = connection(url, self.settings)
        try:
            conn.request("POST", path, body, headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        except _TRANSPORT as exc:  # worded as gRPC's own report of it
            raise _Retry(f"UNAVAILABLE: {type(exc).__name__}: {exc}".rstrip(": ")) from exc

    def _token(self, url: str) -> str:
        """This member's token, from ``/v3/auth/authenticate`` the first time."""
        token = self._tokens.get(url)
        if token is None:
            status, data = self._send(url, "/v3/auth/authenticate", json.dumps(
                {"name": self.settings.username, "password": self.settings.password or ""}),
                {"Content-Type": "application/json"})
            if status != 200:
                code, message = _error(status, data)
                raise (_Retry if code == _UNAVAILABLE else EtcdError)(message)
            token = self._tokens[url] = str(json.loads(data)["token"])
        return token

    def _drop(self, url: str) -> None:
        self._tokens.pop(url, None)
        conn = self._conns.pop(url, None)
        if conn is not None:
            conn.close()


def _error(status: int, data: bytes) -> tuple[int, str]:
    """The gRPC code and a one-line message of a gateway's error response."""
    try:
        err = json.loads(data)
        code = int(err.get("code", 2))
        name = _CODES[code] if 0 <= code < len(_CODES) else f"code {code}"
        return code, f"{name}: {err.get('message') or err.get('error')}"
    except (ValueError, AttributeError):
        return 0, f"HTTP {status}: {data[:200]!r}"
