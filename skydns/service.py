"""The configuration both programs share: the option converters, the etcd connection options
and ``ServiceConfig``, the base of skyserve's and kube2etcd's configs."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from . import options as o
from .etcd import EtcdSettings, parse_endpoint
from .netaddr import split_hostport
from .record import RecordError, check_name, normalize_prefix


def zone_name(raw: Any) -> str:
    value = o.text(raw).strip()
    if value in (".", ""):
        return "."
    try:
        labels = check_name(value, what="zone")
    except RecordError as exc:
        raise ValueError(str(exc)) from None
    return ".".join(labels) + "."


def hostport(raw: Any) -> str:
    value = o.text(raw)
    split_hostport(value, 0)
    return value


def endpoint(raw: Any) -> str:
    value = o.text(raw)
    parse_endpoint(value)
    return value


def prefix(raw: Any) -> str:
    return normalize_prefix(o.text(raw))


def optional_text(raw: Any) -> str | None:
    value = o.text(raw)
    return value or None


def readable_file(raw: Any) -> str | None:
    value = o.text(raw)
    if not value:
        return None
    try:
        with open(value, "rb"):
            pass
    except OSError as exc:
        raise ValueError(f"cannot read {value}: {exc.strerror}") from None
    return value


TTL = o.integer(0, 2**31 - 1)

# How to reach etcd: the same options, with the same names, in skyserve and kube2etcd.
ETCD_CONNECTION: tuple[o.Option, ...] = (
    o.Option("etcd-ca", readable_file, None, "CA file for etcd TLS"),
    o.Option("etcd-cert", readable_file, None, "client certificate for etcd TLS"),
    o.Option("etcd-key", readable_file, None, "client key for etcd TLS"),
    o.Option("etcd-username", optional_text, None, "etcd user name"),
    o.Option("etcd-password", optional_text, None, "etcd password"),
    o.Option("etcd-timeout", o.seconds, 5.0, "timeout of one etcd request"),
)

@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """What skyserve's and kube2etcd's configs both hold: the etcd connection, the health
    and metrics addresses and the log level (fields named after their options)."""

    etcd_endpoints: tuple[str, ...]
    etcd_prefix: str
    etcd_ca: str | None
    etcd_cert: str | None
    etcd_key: str | None
    etcd_username: str | None
    etcd_password: str | None
    etcd_timeout: float
    etcd_probe_interval: float
    health_addr: str
    metrics_addr: str
    log_level: str

    @property
    def etcd(self) -> EtcdSettings:
        return etcd_settings(asdict(self))

    def digest(self) -> str:
        """A short hash of the effective configuration, for logs (passwords included)."""
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def etcd_settings(values: Mapping[str, Any]) -> EtcdSettings:
    """The etcd connection from option values (shared with the register commands)."""
    return EtcdSettings(
        endpoints=tuple(values["etcd_endpoints"]), ca_file=values["etcd_ca"],
        cert_file=values["etcd_cert"], key_file=values["etcd_key"],
        username=values["etcd_username"], password=values["etcd_password"],
        timeout=values["etcd_timeout"],
    )
