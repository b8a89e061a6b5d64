"""From slim Kubernetes objects to the SkyDNS records the bridge wants in etcd. Pure: no I/O.

The layout is kube2sky's (``<prefix>/<reversed zone>/svc/<ns>/<svc>/<label>``), extended
with what kube2sky never wrote: PTR records under ``<prefix>/arpa/...``, ExternalName
aliases, the ``dns-version`` TXT record and dual-stack addresses. Every label is
deterministic, so a restart computes the very same keys and rewrites nothing:

* a cluster IP leaf is the FNV-1a-32 of the IP text (8 hex digits);
* a headless endpoint is named by its hostname, else by its dashed IP (``10-0-0-2``), and
  that label is also the etcd leaf; a hostname shared by several IPs becomes a directory
  with one FNV-labelled leaf per IP;
* a PTR leaf is the FNV of ``<ns>/<svc>``, so services sharing an IP each get their own;
* endpoints of ClusterIP services get names too, as CoreDNS answers them
  (``<hostname or dashed IP>.<svc>.<ns>.svc.<zone>``: an A/AAAA leaf per IP, FNV-labelled,
  one level below the endpoint name, and a PTR). SkyDNS groups keep them out of the
  service's own answer: the cluster IPs are in group ``service``, the endpoints in group
  ``endpoint`` one level deeper, and the shallowest group wins (``msg.Group``);
* an ExternalName leaf is the FNV of the target name.

Every value carries ``"kube2etcd": "<domain>"``, the owner marker that lets the bridge
tell its keys from those of other writers.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

from skydns.record import Labels, Record, RecordError, check_host, name_to_key

DNS_SCHEMA_VERSION = "1.1.0"
_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
# An IPv4 address already in canonical form (no leading zeros), as the API nearly always
# gives them: taken as it is, without ipaddress, whose parsing was a quarter of the CPU of
# computing a big cluster's records.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_CANONICAL_V4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}\Z")
OWNER_FIELD = "kube2etcd"

SERVICE_GROUP = "service"  # SkyDNS groups of a ClusterIP service's own and endpoint records
ENDPOINT_GROUP = "endpoint"

CLUSTER_IP = "ClusterIP"
HEADLESS = "Headless"
EXTERNAL_NAME = "ExternalName"


# -- the slim objects the watchers keep (only the fields DNS needs) --------------------


@dataclass(frozen=True, slots=True)
class Port:
    name: str
    port: int
    protocol: str  # upper case, as in the API: TCP, UDP, SCTP


@dataclass(frozen=True, slots=True)
class Service:
    namespace: str
    name: str
    kind: str  # CLUSTER_IP, HEADLESS or EXTERNAL_NAME
    cluster_ips: tuple[str, ...] = ()
    external_name: str = ""
    ports: tuple[Port, ...] = ()
    publish_not_ready: bool = False


@dataclass(frozen=True, slots=True)
class Endpoint:
    addresses: tuple[str, ...]
    hostname: str = ""
    ready: bool = True


@dataclass(frozen=True, slots=True)
class EndpointGroup:
    """Endpoints sharing one port list (an EndpointSlice, or one subset of Endpoints)."""

    endpoints: tuple[Endpoint, ...]
    ports: tuple[Port, ...] = ()


@dataclass(frozen=True, slots=True)
class EndpointSet:
    """One EndpointSlice or Endpoints object, reduced to what DNS needs."""

    namespace: str
    name: str
    service: str  # the Service it belongs to
    groups: tuple[EndpointGroup, ...] = ()


@dataclass(frozen=True, slots=True)
class Pod:
    namespace: str
    name: str
    ips: tuple[str, ...]


# -- naming ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Domain:
    """Where and how records are written: the cluster domain, key prefix, TTL, owner."""

    domain: Labels  # e.g. ("cluster", "local")
    prefix: str = "/skydns"
    ttl: int = 30

    @property
    def owner(self) -> str:
        return ".".join(self.domain)

    def key(self, *labels: str) -> str:
        """The key of ``<labels>.<domain>`` (labels leftmost first)."""
        return name_to_key((*labels, *self.domain), self.prefix)

    def fqdn(self, *labels: str) -> str:
        return ".".join((*labels, *self.domain)) + "."

    def owned_prefixes(self) -> tuple[str, ...]:
        """The subtrees where the bridge may have written (read back by the reconciler)."""
        return (self.key("svc"), self.key("pod"), f"{self.prefix}/arpa")

    @property
    def version_key(self) -> str:
        return self.key("dns-version")


def fnv32a(text: str) -> str:
    """FNV-1a, 32 bits, as 8 lower-case hex digits (kube2sky used the same hash)."""
    h = 0x811C9DC5
    for byte in text.encode():
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return f"{h:08x}"


def dashed(ip: str) -> str:
    """``10.0.0.2`` -> ``10-0-0-2``; IPv6 colons become dashes as CoreDNS does."""
    if _CANONICAL_V4.match(ip):
        return ip.replace(".", "-")
    addr = ipaddress.ip_address(ip)
    if addr.version == 4:
        return str(addr).replace(".", "-")
    label = addr.compressed.replace(":", "-")
    if label.startswith("-"):
        label = "0" + label
    if label.endswith("-"):
        label += "0"
    return label


def reverse_labels(ip: str) -> Labels:
    """The PTR name of an address, as labels (``10.96.0.1`` -> 1.0.96.10.in-addr.arpa)."""
    if _CANONICAL_V4.match(ip):
        return (*reversed(ip.split(".")), "in-addr", "arpa")
    return tuple(ipaddress.ip_address(ip).reverse_pointer.split("."))


def valid_ip(ip: str) -> str | None:
    """The canonical text of an address, or None if it is not one."""
    if _CANONICAL_V4.match(ip):
        return ip
    try:
        return str(ipaddress.ip_address(ip))
    except ValueError:
        return None


def encode(record: Record, owner: str) -> str:
    """The etcd value: ``Record.to_json()`` plus the owner marker."""
    if not record.host:  # TXT only: no empty host, no priority (meaningless for TXT)
        obj = json.loads(record.to_json())
        obj.pop("host", None)
        obj.pop("priority", None)
        obj[OWNER_FIELD] = owner
        return json.dumps(obj, separators=(",", ":"), sort_keys=True)
    return record.to_json()[:-1] + owner_marker(owner)


@functools.lru_cache(maxsize=8)
def owner_marker(owner: str) -> str:
    """The owner field and the closing brace, as they end a written value: kept per owner,
    since a bridge writes every value with its one owner."""
    return f',"{OWNER_FIELD}":{json.dumps(owner)}}}'


# -- records ---------------------------------------------------------------------------

Records = dict[str, Record]


def version_records(zone: Domain) -> Records:
    key = zone.version_key
    return {key: Record(key=key, text=DNS_SCHEMA_VERSION, ttl=zone.ttl)}


def pod_records(zone: Domain, namespace: str, ip: str) -> Records:
    """``a-b-c-d.<ns>.pod.<zone>`` for a running pod's IP."""
    canonical = valid_ip(ip)
    if canonical is None or not is_label(namespace):
        return {}
    ip = canonical
    key = zone.key(dashed(ip), namespace, "pod")
    return {key: Record(key=key, host=ip, ttl=zone.ttl)}


def service_records(zone: Domain, svc: Service, sets: Iterable[EndpointSet] = ()) -> Records:
    """Every record for one Service: names, SRV, PTR; ``sets`` are its endpoint objects."""
    out: Records = {}
    if not (is_label(svc.name) and is_label(svc.namespace)):
        return out
    if svc.kind == CLUSTER_IP:
        _cluster_ip(zone, svc, sets, out)
    elif svc.kind == HEADLESS:
        _headless(zone, svc, sets, out)
    elif svc.kind == EXTERNAL_NAME and is_name(svc.external_name):
        key = f"{zone.key(svc.name, svc.namespace, 'svc')}/{fnv32a(svc.external_name)}"
        out[key] = Record(key=key, host=_fqdn(svc.external_name), ttl=zone.ttl)
    return out


def _cluster_ip(zone: Domain, svc: Service, sets: Iterable[EndpointSet], out: Records) -> None:
    base = zone.key(svc.name, svc.namespace, "svc")
    name = zone.fqdn(svc.name, svc.namespace, "svc")
    ptr_leaf = fnv32a(f"{svc.namespace}/{svc.name}")
    ips = [ip for raw in svc.cluster_ips if (ip := valid_ip(raw)) is not None]
    # Endpoint names first, as CoreDNS answers them: an address under the endpoint's name
    # and the reverse of its IP naming it. A cluster IP that is also an endpoint IP keeps
    # the service's own PTR (written next, same key).
    for label, addrs in _endpoint_names(svc, sets).items():
        target = zone.fqdn(label, svc.name, svc.namespace, "svc")
        for ip in addrs:
            key = f"{base}/{label}/{fnv32a(ip)}"
            out[key] = Record(key=key, host=ip, ttl=zone.ttl, group=ENDPOINT_GROUP)
            key = f"{name_to_key(reverse_labels(ip), zone.prefix)}/{ptr_leaf}"
            out[key] = Record(key=key, host=target, ttl=zone.ttl)
    for ip in ips:
        key = f"{base}/{fnv32a(ip)}"
        out[key] = Record(key=key, host=ip, ttl=zone.ttl, group=SERVICE_GROUP)
        key = f"{name_to_key(reverse_labels(ip), zone.prefix)}/{ptr_leaf}"
        out[key] = Record(key=key, host=name, ttl=zone.ttl)
    if not ips:
        return
    for port in svc.ports:
        if is_label(port.name):
            key = f"{_srv_base(base, port)}/{fnv32a(name)}"
            out[key] = Record(key=key, host=name, port=port.port, ttl=zone.ttl)


@dataclass(slots=True)
class _Address:
    hostname: str
    ready: bool
    ports: dict[tuple[str, str], set[int]]  # (port name, protocol) -> port numbers


def _published(svc: Service, sets: Iterable[EndpointSet]) -> dict[str, _Address]:
    """The service's endpoint addresses that DNS publishes: ready, or all of them with
    ``publishNotReadyAddresses``; keyed by canonical IP."""
    # Merge every endpoint object of the service: an IP may appear in two slices while
    # they are being updated; it is ready if any says so and keeps the first hostname.
    addrs: dict[str, _Address] = {}
    for eps in sorted(sets, key=lambda s: s.name):
        for group in eps.groups:
            named = [(p.name, p.protocol, p.port) for p in group.ports if is_label(p.name)]
            for ep in group.endpoints:
                for raw in ep.addresses:
                    ip = valid_ip(raw)
                    if ip is None:
                        continue
                    hostname = ep.hostname.lower() if is_label(ep.hostname.lower()) else ""
                    a = addrs.setdefault(ip, _Address(hostname, ep.ready, {}))
                    a.ready = a.ready or ep.ready
                    a.hostname = a.hostname or hostname
                    for pname, proto, number in named:
                        a.ports.setdefault((pname, proto), set()).add(number)
    return {ip: a for ip, a in addrs.items() if a.ready or svc.publish_not_ready}


def _by_label(published: dict[str, _Address]) -> dict[str, list[str]]:
    """Endpoint label (hostname, else dashed IP) -> its IPs, labels sorted."""
    by_label: dict[str, list[str]] = {}
    for ip, a in published.items():
        by_label.setdefault(a.hostname or dashed(ip), []).append(ip)
    return dict(sorted(by_label.items()))


def _endpoint_names(svc: Service, sets: Iterable[EndpointSet]) -> dict[str, list[str]]:
    return _by_label(_published(svc, sets))


def _headless(zone: Domain, svc: Service, sets: Iterable[EndpointSet], out: Records) -> None:
    published = _published(svc, sets)
    base = zone.key(svc.name, svc.namespace, "svc")
    ptr_leaf = fnv32a(f"{svc.namespace}/{svc.name}")
    for label, ips in _by_label(published).items():
        target = zone.fqdn(label, svc.name, svc.namespace, "svc")
        for ip in ips:
            key = f"{base}/{label}" if len(ips) == 1 else f"{base}/{label}/{fnv32a(ip)}"
            out[key] = Record(key=key, host=ip, ttl=zone.ttl)
            key = f"{name_to_key(reverse_labels(ip), zone.prefix)}/{ptr_leaf}"
            out[key] = Record(key=key, host=target, ttl=zone.ttl)
        # SRV: one per (endpoint name, port); an endpoint name shared by several IPs
        # is one target, so its ports are merged.
        ports: dict[tuple[str, str], set[int]] = {}
        for ip in ips:
            for pkey, numbers in published[ip].ports.items():
                ports.setdefault(pkey, set()).update(numbers)
        for (pname, proto), numbers in ports.items():
            srv = _srv_base(base, Port(pname, 0, proto))
            for number in sorted(numbers):
                key = f"{srv}/{label}" if len(numbers) == 1 else f"{srv}/{label}/{number}"
                out[key] = Record(key=key, host=target, port=number, ttl=zone.ttl)


def _srv_base(base: str, port: Port) -> str:
    return f"{base}/_{port.protocol.lower()}/_{port.name.lower()}"


def _fqdn(name: str) -> str:
    return name.rstrip(".").lower() + "."


def is_label(label: str) -> bool:
    """Whether a string is a DNS-1123 label, as Kubernetes names, hostnames and ports are.

    Stricter than what SkyDNS keys allow: a ``*`` or ``_`` here would change the meaning of
    the key (a wildcard, an SRV level), so such names are never written.
    """
    return bool(_DNS1123.match(label))


def is_name(name: str) -> bool:
    """Whether a string is a host name skyserve serves as a target: valid and no address."""
    try:
        return check_host(name) is None
    except RecordError:
        return False


def values(zone: Domain, records: Records) -> dict[str, str]:
    """Records as the etcd values the bridge writes (with the owner marker)."""
    owner = zone.owner
    return {key: encode(record, owner) for key, record in records.items()}


def kind_of(zone: Domain, key: str, value: str) -> str:
    """The record kind a written key/value stands for (for the records gauge): cheap."""
    version, arpa, pod, svc = _kind_prefixes(zone)
    if key == version:
        return "txt"
    if key.startswith(arpa):
        return "ptr"
    if key.startswith(pod):
        return "pod"
    if "/_" in key[svc:]:
        return "srv"
    start = value.find('"host":"')
    host = value[start + 8 : value.find('"', start + 8)] if start >= 0 else ""
    if host.endswith(".") or not host:
        return "cname"
    return "aaaa" if ":" in host else "a"


@functools.cache
def _kind_prefixes(zone: Domain) -> tuple[str, str, str, int]:
    """What kind_of() compares keys with, computed once per zone (it runs once per key)."""
    return zone.version_key, zone.prefix + "/arpa/", zone.key("pod") + "/", len(zone.key("svc"))
