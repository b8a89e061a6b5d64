"""skyserve's configuration: every option, checked, in one frozen object."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from . import options as o
from .etcdstore import EtcdSettings, parse_endpoint
from .lookup import Settings, Zone
from .skydns import RecordError, check_name, normalize_prefix
from .transport import split_hostport

ENV_PREFIX = "SKYSERVE_"


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


def optional_path(raw: Any) -> str | None:
    value = o.text(raw)
    return value or None


TTL = o.integer(0, 2**31 - 1)

OPTIONS: tuple[o.Option, ...] = (
    o.Option("etcd-endpoints", endpoint, ["http://127.0.0.1:2379"],
             "etcd client URLs, comma-separated or repeated", repeat=True),
    o.Option("zone", zone_name, [], "a zone to answer for (repeat for several)", repeat=True),
    o.Option("dns-addr", hostport, "0.0.0.0:53", "DNS listen address (UDP and TCP)"),
    o.Option("health-addr", hostport, ":8080", "liveness endpoint /health"),
    o.Option("ready-addr", hostport, ":8181", "readiness endpoint /ready"),
    o.Option("etcd-prefix", prefix, "/skydns", "etcd key prefix of the records"),
    o.Option("default-ttl", TTL, 300, "TTL of records that set none"),
    o.Option("min-ttl", TTL, 30, "TTL of the SOA and of negative answers"),
    o.Option("max-udp-size", o.integer(512, 65535), 1232, "largest UDP reply (EDNS0)"),
    o.Option("cache-entries", o.integer(0, 10_000_000), 100_000,
             "rendered answers kept in memory"),
    o.Option("etcd-ca", optional_path, None, "CA file for etcd TLS"),
    o.Option("etcd-cert", optional_path, None, "client certificate for etcd TLS"),
    o.Option("etcd-key", optional_path, None, "client key for etcd TLS"),
    o.Option("etcd-username", optional_path, None, "etcd user name"),
    o.Option("etcd-password", optional_path, None, "etcd password"),
    o.Option("etcd-timeout", o.seconds, 5.0, "timeout of one etcd request"),
    o.Option("etcd-probe-interval", o.seconds, 3.0,
             "check a silent etcd watch after this long"),
    o.Option("log-level", o.choice("debug", "info", "warning", "error"), "info", "log level"),
)


@dataclass(frozen=True, slots=True)
class Config:
    etcd_endpoints: tuple[str, ...]
    zone: tuple[str, ...]
    dns_addr: str
    health_addr: str
    ready_addr: str
    etcd_prefix: str
    default_ttl: int
    min_ttl: int
    max_udp_size: int
    cache_entries: int
    etcd_ca: str | None
    etcd_cert: str | None
    etcd_key: str | None
    etcd_username: str | None
    etcd_password: str | None
    etcd_timeout: float
    etcd_probe_interval: float
    log_level: str

    @property
    def zones(self) -> list[Zone]:
        return [Zone(tuple(z.rstrip(".").split(".")) if z != "." else ()) for z in self.zone]

    @property
    def lookup(self) -> Settings:
        return Settings(self.default_ttl, self.min_ttl, self.etcd_prefix)

    @property
    def etcd(self) -> EtcdSettings:
        return EtcdSettings(
            endpoints=self.etcd_endpoints, ca_file=self.etcd_ca, cert_file=self.etcd_cert,
            key_file=self.etcd_key, username=self.etcd_username,
            password=self.etcd_password, timeout=self.etcd_timeout,
        )

    def digest(self) -> str:
        """A short hash of the effective configuration, for logs (passwords included)."""
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def load(argv: Sequence[str], env: Mapping[str, str]) -> Config:
    values = o.load("skyserve", OPTIONS, argv, env, ENV_PREFIX,
                    description="DNS for SkyDNS-format records in etcd")
    if not values["zone"]:
        raise o.ConfigError("--zone: at least one zone is required")
    if (values["etcd_username"] is None) != (values["etcd_password"] is None):
        raise o.ConfigError("--etcd-username and --etcd-password go together")
    if values["etcd_cert"] and not values["etcd_key"]:
        raise o.ConfigError("--etcd-key: required with --etcd-cert")
    values["zone"] = tuple(dict.fromkeys(values["zone"]))
    values["etcd_endpoints"] = tuple(values["etcd_endpoints"])
    return Config(**values)
