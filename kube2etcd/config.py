"""kube2etcd's configuration: every option, checked, in one frozen object.

Same loader and precedence as skyserve (default < TOML file < ``KUBE2ETCD_*`` environment
< flag), and the etcd options are named as skyserve's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from skydns import options as o
from skydns.service import (
    ETCD_CONNECTION,
    TTL,
    ServiceConfig,
    endpoint,
    hostport,
    prefix,
    readable_file,
    zone_name,
)

from .records import Domain, is_label

ENV_PREFIX = "KUBE2ETCD_"

# A Kubernetes label selector, syntax only: the API server does the matching.
_SEL_KEY = r"([a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?/)?[a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?"
_SEL_VALUE = r"([a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?)?"
_SEL_TERM = re.compile(
    rf"\s*(!?\s*{_SEL_KEY}|{_SEL_KEY}\s*(=|==|!=)\s*{_SEL_VALUE}"
    rf"|{_SEL_KEY}\s+(in|notin)\s*\(\s*{_SEL_VALUE}(\s*,\s*{_SEL_VALUE})*\s*\))\s*"
)


def domain(raw: Any) -> str:
    value = zone_name(raw)
    if value == ".":
        raise ValueError("the cluster domain cannot be the root")
    return value.rstrip(".")


def namespace(raw: Any) -> str:
    value = o.text(raw).strip()
    if not is_label(value):
        raise ValueError(f"{value!r} is not a namespace name (a DNS-1123 label)")
    return value


def label_selector(raw: Any) -> str:
    value = o.text(raw).strip()
    for term in re.split(r",(?![^()]*\))", value) if value else []:
        if not _SEL_TERM.fullmatch(term):
            raise ValueError(f"cannot parse label selector term {term.strip()!r}")
    return value


def optional_hostport(raw: Any) -> str:
    """``HOST:PORT``, or empty to disable the listener."""
    value = o.text(raw).strip()
    return hostport(value) if value else ""


def lease_ttl(raw: Any) -> float:
    value = o.seconds(raw)
    if value < 2:
        raise ValueError("the lease TTL must be at least 2s (etcd's minimum)")
    return value


OPTIONS: tuple[o.Option, ...] = (
    o.Option("kubeconfig", readable_file, None,
             "kubeconfig file (default: the pod's service account)"),
    o.Option("etcd-endpoints", endpoint, ["http://127.0.0.1:2379"],
             "etcd client URLs, comma-separated or repeated", repeat=True),
    o.Option("domain", domain, "cluster.local", "the cluster DNS domain"),
    o.Option("etcd-prefix", prefix, "/skydns", "etcd key prefix of the records"),
    o.Option("ttl", TTL, 30, "TTL written in every record"),
    o.Option("pods", o.choice("disabled", "verified"), "disabled",
             "pod records a-b-c-d.<ns>.pod.<domain> for running pods' IPs"),
    o.Option("endpoints-api", o.choice("endpointslices", "endpoints"), "endpointslices",
             "where endpoints come from (discovery.k8s.io/v1 EndpointSlices, or core Endpoints)"),
    o.Option("namespaces", namespace, [], "only these namespaces (comma-separated)",
             repeat=True),
    o.Option("label-selector", label_selector, "", "only Services matching this selector"),
    o.Option("resync-period", o.seconds, 300.0,
             "read etcd back and rewrite differences this often (0: never)"),
    o.Option("leader-elect", o.boolean, False, "elect one writer among several bridges"),
    o.Option("leader-lease-ttl", lease_ttl, 15.0, "leader lease TTL (a standby takes over "
             "at most this long after the leader dies)"),
    o.Option("watch-timeout", o.seconds, 300.0, "timeoutSeconds of each watch request"),
    o.Option("health-addr", optional_hostport, ":8081",
             "/healthz and /readyz listener (empty: none)"),
    o.Option("metrics-addr", optional_hostport, ":9154", "/metrics listener (empty: none)"),
    *ETCD_CONNECTION,
    o.Option("etcd-probe-interval", o.seconds, 2.0,
             "check this often that etcd still holds the records (a replaced or restored "
             "etcd triggers a full rewrite; 0: never)"),
    o.Option("log-level", o.choice("debug", "info", "warning", "error"), "info", "log level"),
)


@dataclass(frozen=True, slots=True)
class Config(ServiceConfig):
    kubeconfig: str | None
    domain: str
    ttl: int
    pods: str
    endpoints_api: str
    namespaces: tuple[str, ...]
    label_selector: str
    resync_period: float
    leader_elect: bool
    leader_lease_ttl: float
    watch_timeout: float

    @property
    def zone(self) -> Domain:
        return Domain(tuple(self.domain.split(".")), self.etcd_prefix, self.ttl)



BARE_FLAGS = ("--leader-elect",)  # booleans that may be given without a value


def _bare_flags(argv: Sequence[str]) -> list[str]:
    """``--leader-elect`` alone means ``--leader-elect=true``."""
    out = list(argv)
    for i, arg in enumerate(out):
        if arg in BARE_FLAGS and (i + 1 == len(out) or out[i + 1].startswith("-")):
            out[i] = f"{arg}=true"
    return out


def load(argv: Sequence[str], env: Mapping[str, str]) -> Config:
    values = o.load("kube2etcd", OPTIONS, _bare_flags(argv), env, ENV_PREFIX,
                    description="Keeps Kubernetes DNS records in etcd, in SkyDNS format")
    if (values["etcd_username"] is None) != (values["etcd_password"] is None):
        raise o.ConfigError("--etcd-username and --etcd-password go together")
    if values["etcd_cert"] and not values["etcd_key"]:
        raise o.ConfigError("--etcd-key: required with --etcd-cert")
    if 0 < values["resync_period"] < 1:
        raise o.ConfigError("--resync-period: must be 0 (never) or at least 1s")
    if 0 < values["etcd_probe_interval"] < 0.1:
        raise o.ConfigError("--etcd-probe-interval: must be 0 (never) or at least 0.1s")
    if values["watch_timeout"] < 1:
        raise o.ConfigError("--watch-timeout: must be at least 1s")
    values["etcd_endpoints"] = tuple(values["etcd_endpoints"])
    values["namespaces"] = tuple(dict.fromkeys(values["namespaces"]))
    return Config(**values)
