"""What ``skydns.etcd`` and the gateway modules share: settings, errors, keys, watch batches
(apart so that the modules do not import each other)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit


class EtcdError(Exception):
    """etcd could not be reached or refused the request."""


class Compacted(EtcdError):
    """The requested revision has been compacted away; a full reload is needed."""

    def __init__(self, revision: int) -> None:
        super().__init__(f"revision compacted (oldest available: {revision})")
        self.revision = revision


@dataclass(frozen=True, slots=True)
class EtcdSettings:
    endpoints: tuple[str, ...] = ("http://127.0.0.1:2379",)
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    username: str | None = None
    password: str | None = None
    timeout: float = 5.0


@dataclass(slots=True)
class KeyValue:
    key: str
    value: bytes
    mod_revision: int
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Header:
    """A response header: which cluster and member answered, at which revision."""

    cluster_id: int
    member_id: int
    revision: int
    raft_term: int


@dataclass(slots=True)
class WatchBatch:
    """One watch response: events in order (value None = delete)."""

    events: list[tuple[str, bytes | None, int]] = field(default_factory=list)
    revision: int = 0


WatchCallback = Callable[[WatchBatch | Exception], None]


def parse_endpoint(url: str) -> tuple[str, int, bool]:
    """``http(s)://host:port`` (or bare ``host:port``) -> (host, port, tls)."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"etcd endpoint {url!r} is not http(s)://host:port")
    return parts.hostname, parts.port or 2379, parts.scheme == "https"
