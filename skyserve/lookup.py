"""Authoritative answers from the in-memory index: the SkyDNS serving rules.

Given a name inside one of our zones and a query type, ``Authority.answer`` returns the
response code and the three sections, plus the set of index paths the answer was read
from. A later change in etcd at or below any of those paths may change the answer, and
nothing else can; the answer cache (``pipeline.answers``) relies on this to stay exact.

Rules (see docs/serving.md for the reasoning, and where we part from SkyDNS/CoreDNS):

* A name returns every record at or below it. ``*`` and ``any`` labels in a query match one
  label. Records stored under a ``*`` key answer, RFC 4592 style, for names below the
  closest existing ancestor that do not exist themselves.
* NXDOMAIN only when nothing exists at or below the name (and no wildcard applies); NODATA
  otherwise. Both carry the SOA of the zone holding the last name of the chain.
* The zone apex answers SOA and NS (from ``ns.dns.<zone>``) and takes its other records
  from ``apex.dns.<zone>`` only; MX and SRV there answer the zone's records below it (a
  full read, depending on the whole zone).
* In the cluster zone (``Zone.cluster``) the layout's own levels (svc, pod, namespaces,
  SRV protocols) are names without records, and SRV comes only from the bridge's SRV
  records, as CoreDNS's kubernetes plugin answers.
* A name whose records have a name host and no address makes one CNAME (its first name
  host), which answers every query type the records do not define natively, and is chased
  inside our zones (RFC 1034 4.3.2: the final rcode is the last name's).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from skydns.record import (
    DEFAULT_PREFIX,
    Labels,
    Record,
    is_ipv4,
    key_to_name,
    labels_text,
)

from .index import WILDCARD_LABELS, Index, Node, subtree
from .wire import constants as T
from .wire.constants import NOERROR, NOTIMP, NXDOMAIN
from .wire.rr import RR, txt_strings

MAX_CHAIN = 10  # CNAMEs followed before giving up (CoreDNS follows 10 as well)
DNS_LABEL = "dns"


@dataclass(frozen=True, slots=True)
class Zone:
    labels: Labels  # the apex, leftmost label first
    cluster: bool = False  # the zone kube2etcd writes: answered as CoreDNS's kubernetes

    @property
    def path(self) -> Labels:
        return tuple(reversed(self.labels))

    @property
    def text(self) -> str:
        return labels_text(self.labels)

    @property
    def reverse(self) -> bool:
        """A reverse zone (in-addr.arpa or ip6.arpa), where name hosts are PTR records."""
        return self.labels[-2:] in (("in-addr", "arpa"), ("ip6", "arpa"))


@dataclass(slots=True)
class Result:
    rcode: int
    zone: Zone
    answer: list[RR] = field(default_factory=list)
    authority: list[RR] = field(default_factory=list)
    additional: list[RR] = field(default_factory=list)
    deps: set[Labels] = field(default_factory=set)
    external: Labels | None = None  # a CNAME target outside our zones, still to resolve
    wildcard: Labels | None = None  # answered from a wildcard below this name (RFC 4592)
    negative: Zone | None = None  # the zone of the last name, when it answered nothing
    foreign: list[Labels] = field(default_factory=list)  # SRV/MX targets outside our zones


@dataclass(frozen=True, slots=True)
class Settings:
    default_ttl: int = 300
    min_ttl: int = 30
    prefix: str = DEFAULT_PREFIX


class Authority:
    """Answers for the configured zones from one index."""

    def __init__(self, index: Index, zones: list[Zone], settings: Settings) -> None:
        self.index = index
        # Longest apex first, so the most specific zone wins.
        self.zones = sorted(zones, key=lambda z: len(z.labels), reverse=True)
        self.settings = settings

    def zone_of(self, name: Labels) -> Zone | None:
        for zone in self.zones:
            n = len(zone.labels)
            if len(name) >= n and name[len(name) - n :] == zone.labels:
                return zone
        return None

    def answer(self, name: Labels, qtype: int, zone: Zone) -> Result:
        result = Result(NOERROR, zone)
        if qtype in (T.AXFR, T.IXFR):
            result.rcode = NOTIMP
            return result
        if name == zone.labels and qtype in (T.SOA, T.NS):
            rrs = [self.soa(zone)] if qtype == T.SOA else self._apex_ns(zone, result)
            result.answer.extend(rrs)
            if not rrs:
                result.authority.append(self.soa(zone))
            return result
        if name == zone.labels and qtype in (T.MX, T.SRV):
            # SkyDNS gives a domain its mail servers and services from the records below
            # it: the zone's own mail/SRV records (not the bookkeeping under dns.<zone>).
            records = self._zone_records(zone, result.deps)
            if not (self._mx(name, records, result) if qtype == T.MX
                    else self._srv(name, records, zone, result)):
                result.authority.append(self.soa(zone))
            return result
        self._resolve(name, qtype, zone, result)
        if result.negative is not None:
            result.authority.append(self.soa(result.negative))
        return result

    def soa(self, zone: Zone) -> RR:
        """The synthesized SOA. Its serial (the etcd revision) is added on the wire."""
        ttl = self.settings.min_ttl
        rdata = (
            ("ns", DNS_LABEL, *zone.labels),
            ("hostmaster", *zone.labels),
            7200,
            1800,
            86400,
            ttl,
        )
        return RR(zone.labels, T.SOA, ttl, rdata)

    # -- reading records -------------------------------------------------------------

    def records(self, name: Labels, zone: Zone, res: Result) -> list[Record] | None:
        """Records answering for ``name`` (group-filtered), or None if it does not exist."""
        deps = res.deps
        if name == zone.labels:
            return self._apex_records(zone, deps)
        path = tuple(reversed(name))
        if zone.cluster and structural(path[len(zone.labels):]):
            # svc, pod, <ns>.svc, _proto.<svc>...: names, not record sets (CoreDNS).
            deps.add(path)
            exists = len(path) == len(zone.labels) + 1 or self.index.find(path) is not None
            return [] if exists else None
        cut = next((i for i, p in enumerate(path) if p in WILDCARD_LABELS), None)
        if cut is not None:
            deps.add(path[:cut])
            nodes = self.index.match(path)
            if self.index.find(path[:cut]) is None:
                return None
            return group_filter(sorted_union(nodes))
        node = self.index.find(path)
        deps.add(path)
        if node is not None:
            return group_filter(subtree(node))
        depth, encloser = self.index.closest_encloser(path)
        deps.update(wildcard_deps(self.index, path, depth, len(zone.labels)))
        star = encloser.children.get("*")
        if star is None or depth < len(zone.labels):
            return None
        res.wildcard = name[len(name) - depth:]
        return group_filter(subtree(star))

    def _zone_records(self, zone: Zone, deps: set[Labels]) -> list[Record]:
        """Every record of the zone outside ``dns.<zone>`` (a full read: only for MX and SRV
        at the apex, and kept in the answer cache until anything in the zone changes)."""
        deps.add(zone.path)
        node = self.index.find(zone.path)
        if node is None:
            return []
        return group_filter([r for label, child in sorted(node.children.items())
                             if label != DNS_LABEL for r in subtree(child)])

    def _apex_records(self, zone: Zone, deps: set[Labels]) -> list[Record]:
        path = zone.path + (DNS_LABEL, "apex")
        deps.add(path)
        node = self.index.find(path)
        return group_filter(subtree(node)) if node is not None else []

    # -- per-type synthesis ----------------------------------------------------------

    def _resolve(self, name: Labels, qtype: int, zone: Zone, res: Result) -> None:
        """Answer ``name`` for ``qtype``, following its CNAME chain through our zones.

        RFC 1034 4.3.2: a name that makes a CNAME answers every type it does not define
        natively with that CNAME, and the chain goes on at the target. The rcode and, for
        a negative answer, the SOA are the last name's (RFC 6604, RFC 2308 section 3).
        """
        seen = {name}
        while True:
            records = self.records(name, zone, res)
            if records is None:
                res.rcode, res.negative = NXDOMAIN, zone
                return
            before = len(res.answer)
            if self._native(name, qtype, records, zone, res):
                if len(res.answer) == before:
                    res.negative = zone
                return
            # In a reverse zone a name host is a PTR record and nothing else: a CNAME there
            # would stand beside the PTR (RFC 1034 3.6.2), and a resolver that learned it
            # from an A query (QNAME minimisation asks A) would then follow it for PTR.
            alias = cname_of(records) if not zone.reverse else None
            # Following a target at or below the name would read the name's own subtree.
            if alias is None or _below(alias.target, name):
                res.negative = zone
                return
            target = alias.target
            res.answer.append(RR(name, T.CNAME, self._ttl(alias), (target,)))
            if target in seen or len(seen) > MAX_CHAIN:
                return  # a loop (each of its CNAMEs given once), or too long a chain
            seen.add(target)
            target_zone = self.zone_of(target)
            if target_zone is None:
                res.external = target  # the forwarder completes it, if there is one
                return
            name, zone = target, target_zone

    def _native(
        self, name: Labels, qtype: int, records: list[Record], zone: Zone, res: Result
    ) -> bool:
        """Add the records ``name`` defines itself for ``qtype``; False when it defines
        none of that type and a CNAME of the name, if it makes one, answers instead."""
        ttl = self._ttl
        if qtype in (T.A, T.AAAA, T.ANY):
            addrs = [(r, r.address) for r in records if r.address is not None]
            for r, address in addrs:
                rtype = T.A if is_ipv4(address) else T.AAAA
                if qtype in (rtype, T.ANY):
                    res.answer.append(RR(name, rtype, ttl(r), (address,)))
            if qtype != T.ANY:
                return bool(addrs)
            txt = self._txt(name, records)
            res.answer.extend(txt)
            if addrs or txt:
                return True
        elif qtype == T.TXT:
            txt = self._txt(name, records)
            res.answer.extend(txt)
            return bool(txt)
        if qtype in (T.CNAME, T.ANY) and not zone.reverse:  # the CNAME itself, not chased
            alias = cname_of(records)
            if alias is not None:
                res.answer.append(RR(name, T.CNAME, ttl(alias), (alias.target,)))
            return True
        if qtype == T.SRV:
            return self._srv(name, records, zone, res)
        if qtype == T.MX:
            return self._mx(name, records, res)
        if qtype in (T.PTR, T.ANY) and zone.reverse:
            for r in records:
                if r.address is None and r.host:
                    res.answer.append(RR(name, T.PTR, ttl(r), (r.target,)))
            return True
        return False

    def _ttl(self, record: Record) -> int:
        return record.ttl or self.settings.default_ttl

    def _txt(self, name: Labels, records: list[Record]) -> list[RR]:
        return [RR(name, T.TXT, self._ttl(r), txt_strings(r.text)) for r in records if r.text]

    def _target(self, record: Record) -> tuple[Labels, list[RR]]:
        """An SRV/MX target and its glue: the host name, or a name made from the key."""
        if record.address is None:
            return _strip(record.target, record.targetstrip), []
        owner = _strip(key_to_name(record.key, self.settings.prefix) or (), record.targetstrip)
        rtype = T.A if is_ipv4(record.address) else T.AAAA
        return owner, [RR(owner, rtype, self._ttl(record), (record.address,))]

    def _srv(self, name: Labels, records: list[Record], zone: Zone, res: Result) -> bool:
        usable = [r for r in records if r.host and r.port != -1]
        if zone.cluster:  # the bridge's SRV records name their targets and have a port
            usable = [r for r in usable if r.address is None and r.port > 0]
        totals: dict[int, int] = {}
        for r in usable:
            totals[r.priority] = totals.get(r.priority, 0) + (r.weight or 100)
        for r in usable:
            weight = max(1, int(100 / totals[r.priority] * (r.weight or 100)))
            target, glue = self._target(r)
            res.answer.append(RR(name, T.SRV, self._ttl(r), (r.priority, weight, r.port, target)))
            res.additional.extend(glue or self._glue(target, res))
        return bool(usable)

    def _mx(self, name: Labels, records: list[Record], res: Result) -> bool:
        mail = [r for r in records if r.mail and r.host]
        for r in mail:
            target, glue = self._target(r)
            res.answer.append(RR(name, T.MX, self._ttl(r), (r.priority, target)))
            res.additional.extend(glue or self._glue(target, res))
        return bool(mail)

    def _apex_ns(self, zone: Zone, res: Result) -> list[RR]:
        path = zone.path + (DNS_LABEL, "ns")
        res.deps.add(path)
        node = self.index.find(path)
        rrs: list[RR] = []
        for r in subtree(node) if node is not None else []:
            if r.address is None:
                continue  # an NS record needs an address for its glue
            target, glue = self._target(r)
            rrs.append(RR(zone.labels, T.NS, self._ttl(r), (target,)))
            res.additional.extend(glue)
        return rrs

    def _glue(self, target: Labels, res: Result) -> list[RR]:
        """Addresses (and CNAMEs) for an in-zone target name, for the additional section."""
        zone = self.zone_of(target)
        if zone is None:
            if target not in res.foreign:
                res.foreign.append(target)  # the forwarder may find its addresses
            return []
        out = Result(NOERROR, zone, deps=res.deps)
        for qtype in (T.A, T.AAAA):
            self._resolve(target, qtype, zone, out)
        return out.answer


def structural(rel: Labels) -> bool:
    """Whether a cluster-zone path (below the apex, root first) is one of the layout's own
    levels: ``svc``, ``pod``, a namespace, or an SRV protocol level (``_tcp``)."""
    if not rel or rel[0] not in ("svc", "pod"):
        return False
    return len(rel) <= 2 or (len(rel) == 4 and rel[0] == "svc" and rel[3].startswith("_"))


def group_filter(records: list[Record]) -> list[Record]:
    """SkyDNS ``msg.Group``: the shallowest grouped record picks the group.

    Ungrouped records always pass; if records at the deciding depth disagree on the
    group, everything passes.
    """
    if not records:
        return records
    depths = [r.key.count("/") for r in records]
    group, depth = records[0].group, depths[0]
    for r, d in zip(records, depths, strict=True):
        if d < depth:
            if not r.group:
                break
            group, depth = r.group, d
    if not group:
        return records
    out: list[Record] = []
    for r, d in zip(records, depths, strict=True):
        if r.group and d == depth and r.group != group:
            return records
        if not r.group or r.group == group:
            out.append(r)
    return out


def wildcard_deps(index: Index, path: Labels, depth: int, zone_depth: int) -> set[Labels]:
    """What can change the answer for a name that does not exist (RFC 4592 wildcards).

    ``depth`` is how much of ``path`` exists (the closest encloser). The answer changes if a
    ``*`` appears at any level, if a node appears between the encloser and the name (a new
    encloser), or, when a ``*`` higher up could take over, if the encloser goes away.
    """
    deps = {(*path[:d], "*") for d in range(zone_depth, len(path))}
    deps.update(path[:d] for d in range(depth + 1, len(path)))
    for d in range(zone_depth, depth):
        node = index.find(path[:d])
        if node is not None and "*" in node.children:
            deps.add(path[:depth])
            break
    return deps


def sorted_union(nodes: list[Node]) -> list[Record]:
    seen: dict[str, Record] = {}
    for node in nodes:
        for r in subtree(node):
            seen[r.key] = r
    return sorted(seen.values(), key=_key)


def cname_of(records: list[Record]) -> Record | None:
    """The record that makes a name a CNAME: its first name host, unless the name has
    address records (a CNAME never stands beside other data, RFC 1034 3.6.2)."""
    if any(r.address is not None for r in records):
        return None
    return next((r for r in records if r.host), None)


def _below(target: Labels, name: Labels) -> bool:
    """Whether ``target`` is ``name`` or a name below it."""
    return target[len(target) - len(name) :] == name


def _key(record: Record) -> str:
    return record.key


def _strip(target: Labels, count: int) -> Labels:
    """``targetstrip``: drop leftmost labels, unless that would leave nothing."""
    return target[count:] if 0 < count < len(target) else target
