"""Signing one DO=1 answer of a signed zone: what the ``zones`` stage calls.

Given the lookup's ``Result``, it adds the zone's DNSKEY answer at the apex, the compact
denial NSEC of a negative answer (``denial``), the NSEC proving a wildcard expansion, and
an RRSIG after every RRset of ours in every section (each RRset by the keys of the zone
it belongs to; RRsets from upstream or from unsigned zones are left as they are). An
RRset and its RRSIGs are one unit for the renderer, kept or left out together.

The index paths read for NSEC bitmaps join the answer's ``deps``, so the answer cache
drops a signed answer exactly when an etcd change could change anything it says.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

from skydns.record import Labels

from ..index import WILDCARD_LABELS
from ..lookup import Authority, Result, Zone
from ..wire import constants as T
from ..wire.constants import NOERROR, NXDOMAIN
from ..wire.rr import RR, rrsets
from . import denial
from .keys import ZoneKey
from .sign import Window, rrsig, window

# Types a name of ours can have, and the apex's own.
NAME_TYPES = (T.A, T.AAAA, T.CNAME, T.TXT, T.SRV, T.MX, T.PTR)
APEX_TYPES = (T.SOA, T.NS)
DNSKEY_TTL = 3600


class Signed(NamedTuple):
    rcode: int
    sections: tuple[list[list[RR]], list[list[RR]], list[list[RR]]]
    resign_at: float  # wall-clock time after which these signatures are renewed


class Signer:
    """The keys of every signed zone, and signing with them."""

    def __init__(self, keys: Mapping[Zone, Sequence[ZoneKey]]) -> None:
        self.keys = {zone: tuple(ks) for zone, ks in keys.items() if ks}

    def signs(self, zone: Zone) -> bool:
        return zone in self.keys

    def dnskeys(self, zone: Zone) -> list[RR]:
        return [RR(zone.labels, T.DNSKEY, DNSKEY_TTL, (k.rdata,)) for k in self.keys[zone]]

    def sign(self, authority: Authority, qname: Labels, qtype: int, result: Result,
             serial: int, now: float) -> Signed:
        zone, rcode = result.zone, result.rcode
        answer, auth = list(result.answer), list(result.authority)
        if qname == zone.labels and qtype == T.DNSKEY:
            answer, auth, rcode = self.dnskeys(zone), [], NOERROR
        else:
            denied = self._denial(authority, qname, answer, result)
            if denied is not None:
                auth.append(denied)
                rcode = NOERROR  # RFC 9824: NXNAME in the bitmap says the name is absent
        job = _Job(self, authority, window(now), serial)
        signed_answer = job.units(answer)
        signed_additional = job.units(result.additional)
        signed_auth = job.units(auth + job.proofs)
        return Signed(rcode, (signed_answer, signed_auth, signed_additional),
                      job.window.resign_at)

    def _denial(self, authority: Authority, qname: Labels, answer: list[RR],
                result: Result) -> RR | None:
        """The NSEC for the last name of the answer's CNAME chain, if nothing answers it."""
        if result.rcode not in (NOERROR, NXDOMAIN):
            return None
        name = qname
        for rr in answer:
            if rr.owner == name and rr.rtype == T.CNAME:
                name = rr.rdata[0]
        zone = authority.zone_of(name)
        if zone is None or zone not in self.keys or any(rr.owner == name for rr in answer):
            return None
        ttl = authority.settings.min_ttl  # RFC 9077: the SOA's TTL and minimum, both this
        if result.rcode == NXDOMAIN:
            return denial.nxname(name, ttl)
        return denial.nodata(name, self._types(authority, name, zone, result), ttl)

    def _types(self, authority: Authority, name: Labels, zone: Zone, result: Result) -> set[int]:
        """The types ``name`` has: those the lookup answers with at that owner."""
        types = {T.DNSKEY} if name == zone.labels else set()
        for qtype in NAME_TYPES + (APEX_TYPES if name == zone.labels else ()):
            found = authority.answer(name, qtype, zone)
            result.deps.update(found.deps)
            types.update(rr.rtype for rr in found.answer if rr.owner == name)
        return types


class _Job:
    """Signing the sections of one answer."""

    def __init__(self, signer: Signer, authority: Authority, win: Window, serial: int) -> None:
        self.signer, self.authority, self.window, self.serial = signer, authority, win, serial
        self.proofs: list[RR] = []

    def units(self, records: list[RR]) -> list[list[RR]]:
        return [self._unit(rrset) for rrset in rrsets(records)]

    def _unit(self, rrset: list[RR]) -> list[RR]:
        owner, rtype = rrset[0].owner, rrset[0].rtype
        zone = self.authority.zone_of(owner)
        if zone is None or zone not in self.signer.keys:
            return rrset
        labels = None if rtype in (T.NSEC, T.DNSKEY, T.SOA) else self._expanded(owner, zone)
        keys = _signing_keys(self.signer.keys[zone], rtype)
        return rrset + [rrsig(rrset, key, self.window, self.serial, labels) for key in keys]

    def _expanded(self, owner: Labels, zone: Zone) -> int | None:
        """For a name answered from ``*.<encloser>``, the encloser's label count (and the
        proof that the name itself does not exist is queued); else None."""
        path = tuple(reversed(owner))
        index = self.authority.index
        if any(p in WILDCARD_LABELS for p in path) or index.find(path) is not None:
            return None
        depth, encloser = index.closest_encloser(path)
        if "*" not in encloser.children or depth < len(zone.labels):
            return None
        proof = denial.covering(owner[len(owner) - depth - 1 :], self.authority.settings.min_ttl)
        if proof not in self.proofs:
            self.proofs.append(proof)
        return depth


def _signing_keys(keys: tuple[ZoneKey, ...], rtype: int) -> tuple[ZoneKey, ...]:
    """KSKs sign the DNSKEY RRset, ZSKs the rest; a lone kind (a CSK) signs everything."""
    ksks = tuple(k for k in keys if k.ksk)
    zsks = tuple(k for k in keys if not k.ksk)
    return (ksks or zsks) if rtype == T.DNSKEY else (zsks or ksks)
