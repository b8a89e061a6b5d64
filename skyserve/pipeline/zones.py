"""Stage 4, our zones: authoritative answers from the in-memory index.

Contract: a query for a name in one of our zones (class IN) is answered here, with AA:
SERVFAIL before the first complete load from etcd (never NXDOMAIN), then what ``lookup``
says. Two kinds go on to forwarding instead: a name we do not have in a ``fallthrough``
zone (CoreDNS's fallthrough), and — answered here, after the upstream's reply — a CNAME
chain that leaves our zones, whose target's records are appended, and SRV/MX answers whose
targets lie outside our zones, whose addresses are fetched for the additional section.
Those replies depend on the forwarder, so they are never kept as exact. Names outside our zones
pass on untouched. NOERROR and NXDOMAIN answers are kept in the answer cache with the
index paths they were read from.

This stage also owns the data: ``load`` swaps in a whole snapshot, ``apply`` applies watch
events, each dropping exactly the cached answers they may change.
DO=1 answers in a zone given ``--dnssec`` keys are signed between ``lookup`` and the render
(``dnssec.signer``); everything else is rendered exactly as without DNSSEC.
"""

from __future__ import annotations

import time

from skydns.record import Labels

from ..dnssec.signer import Signed
from ..forward.cache import STALE_TTL
from ..forward.policy import Outcome
from ..index import Change, Index
from ..lookup import Authority, Result
from ..wire import constants as T
from ..wire.constants import (
    EDE_NOT_READY,
    EDE_OTHER,
    EDE_STALE,
    NOERROR,
    NOTIMP,
    NXDOMAIN,
    RD,
    SERVFAIL,
)
from ..wire.query import ede_option, encode_name
from ..wire.render import Rendered
from ..wire.response import section_records
from ..wire.rr import RR, rrsets
from .context import Sections, Shared
from .request import Handler, Request

ROTATE = (T.A, T.AAAA, T.MX, T.SRV)
MAX_ROTATIONS = 8
MAX_GLUE = 4  # SRV/MX targets outside our zones whose addresses are fetched upstream


class Zones:
    def __init__(self, shared: Shared, next: Handler) -> None:
        self.shared = shared
        self.next = next
        settings = shared.settings
        self.authority = Authority(Index(), settings.zones, settings.lookup)
        self.names = self.authority.index.names  # the index's flat table (stage 1b reads it)
        self.ready = False
        self.revision = 0

    # -- serving ---------------------------------------------------------------------

    def handle(self, req: Request) -> bytes | None:
        query, fwd = req.query, self.shared.forwarder
        zone = self.authority.zone_of(query.labels) if query.qclass == T.CLASS_IN else None
        if zone is None:
            return self.next(req)
        if not self.ready:
            return self.shared.error(req, SERVFAIL, zone.text, EDE_NOT_READY)
        result = self.authority.answer(query.labels, query.qtype, zone)
        if result.wildcard is not None:
            req.wildcard = result.wildcard  # rate limiting counts these per wildcard
        if query.qtype == T.ANY and not req.tcp and self.shared.settings.minimal_any:
            result.answer = minimal_any(result.answer)
        if (result.rcode == NXDOMAIN and zone in self.shared.settings.fallthrough
                and fwd is not None and req.can_defer and fwd.pool_for(query.labels)):
            return self.next(req)  # forwarded instead
        target = result.external
        if (target is not None and fwd is not None and req.can_defer
                and fwd.pool_for(target) and result.rcode == NOERROR):
            self._complete(req, result, target)
            return None
        glue = [t for t in result.foreign[:MAX_GLUE] if fwd is not None and fwd.pool_for(t)]
        if glue and req.can_defer:
            self._fetch_glue(req, result, glue)
            return None
        keep = result.deps if result.rcode in (NOERROR, NXDOMAIN) else None
        signed = self._signed(req, result)
        if signed is not None:
            return self._serve_signed(req, result, signed, keep)
        ede = ede_option(EDE_OTHER, "zone transfers are not served") if result.rcode == NOTIMP \
            else b""
        variants = self._render_rotations(req, result.rcode, plain(result), ede)
        stat_id = req.count(self.shared.stats.tally, result.zone.text, result.rcode, "etcd",
                            len(variants[0].wire))
        return self.shared.answers.serve_ours(req, variants, stat_id, keep)

    def _render_rotations(self, req: Request, rcode: int, sections: Sections,
                          ede: bytes = b"") -> list[Rendered]:
        answer = sections[0]
        first = self.shared.render(req, rcode, sections, ede=ede)
        turns = max((len(s) for s in answer if s[0].rtype in ROTATE), default=1)
        if not self.shared.settings.shuffle or turns < 2 or first.serial_at >= 0:
            return [first]
        out = [first]
        for k in range(1, min(turns, MAX_ROTATIONS)):
            rotated = [s[k % len(s):] + s[: k % len(s)] if s[0].rtype in ROTATE else s
                       for s in answer]
            rotated_sections: Sections = (rotated, *sections[1:])
            out.append(self.shared.render(req, rcode, rotated_sections))
        return out

    # -- DNSSEC ----------------------------------------------------------------------

    def _serial(self) -> int:
        return (self.revision + self.shared.settings.serial_offset) & 0xFFFFFFFF

    def _signed(self, req: Request, result: Result) -> Signed | None:
        """The signed sections of a DO=1 answer in a signed zone, else None."""
        signer = self.shared.settings.dnssec
        if signer is None or not req.query.do or not signer.signs(result.zone):
            return None
        query = req.query
        return signer.sign(self.authority, query.labels, query.qtype, result, self._serial(),
                           time.time())

    def _render_signed(self, req: Request, signed: Signed) -> list[Rendered]:
        """Rendered with the serial that was signed written in: no splice at send time."""
        serial = self._serial().to_bytes(4, "big")
        out = []
        for v in self._render_rotations(req, signed.rcode, signed.sections):
            at = v.serial_at
            wire = v.wire if at < 0 else v.wire[:at] + serial + v.wire[at + 4 :]
            out.append(Rendered(wire, -1, v.truncated))
        return out

    def _serve_signed(self, req: Request, result: Result, signed: Signed,
                      keep: set[Labels] | None) -> bytes:
        """Kept until the signatures are renewed; one with an SOA (whose serial is
        signed) until etcd changes at all: it depends on the root path, ()."""
        variants = self._render_signed(req, signed)
        stat_id = req.count(self.shared.stats.tally, result.zone.text, signed.rcode, "etcd",
                            len(variants[0].wire))
        if keep is not None and any(rr.rtype == T.SOA for rr in result.authority
                                    + result.answer):
            keep = keep | {()}
        expires = time.monotonic() + max(0.0, signed.resign_at - time.time())
        return self.shared.answers.serve_ours(req, variants, stat_id, keep, expires)

    def _complete(self, req: Request, result: Result, target: Labels) -> None:
        """Resolve a CNAME target outside our zones upstream and append its records."""

        def done(outcome: Outcome) -> None:
            req.later(lambda: self._completed(req, result, outcome))

        assert self.shared.forwarder is not None
        self.shared.forwarder.fetch(target, encode_name(target), req.query.qtype, T.CLASS_IN,
                                    flags=RD, do=req.query.do, tcp=req.tcp, done=done)

    def _fetch_glue(self, req: Request, result: Result, targets: list[Labels]) -> None:
        """The addresses of SRV/MX targets outside our zones, from upstream, for the
        additional section (as CoreDNS does); the reply waits for all of them."""
        fwd = self.shared.forwarder
        assert fwd is not None
        questions = [(t, qtype) for t in targets for qtype in (T.A, T.AAAA)]
        pending = [len(questions)]

        def done(outcome: Outcome) -> None:
            if outcome.response is not None and outcome.response.rcode == NOERROR:
                result.additional.extend(
                    r._replace(ttl=max(0, r.ttl - outcome.age))
                    for r in section_records(outcome.response, 0)
                    if r.rtype in (T.A, T.AAAA) and r.owner in targets)
            pending[0] -= 1
            if not pending[0]:
                req.later(lambda: self._reply(req, result))

        for target, qtype in questions:
            fwd.fetch(target, encode_name(target), qtype, T.CLASS_IN, flags=RD,
                      do=req.query.do, tcp=req.tcp, done=done)

    def _reply(self, req: Request, result: Result, ede: bytes = b"") -> bytes:
        """A reply that depends on the forwarder: rendered now, never kept as exact."""
        signed = self._signed(req, result)
        if signed is None:
            reply = self.shared.render(req, result.rcode, plain(result), ede=ede).wire
            rcode = result.rcode
        else:
            reply, rcode = self._render_signed(req, signed)[0].wire, signed.rcode
        req.count(self.shared.stats.tally, result.zone.text, rcode, "etcd", len(reply))
        return reply

    def _completed(self, req: Request, result: Result, outcome: Outcome) -> bytes:
        """Our CNAMEs, then the upstream's answer for the target, with its rcode and (for a
        negative answer) its SOA, so the client can cache the denial (RFC 2308)."""
        resp, ede = outcome.response, b""
        if resp is None:
            result.rcode = outcome.rcode
            ede = ede_option(outcome.ede) if outcome.ede is not None else b""
        else:
            age = outcome.age
            result.rcode = resp.rcode

            def aged(r: RR) -> RR:  # as the forwarding stage relays them
                return r._replace(ttl=STALE_TTL if outcome.stale else max(0, r.ttl - age))

            result.answer.extend(aged(r) for r in section_records(resp, 0))
            result.authority.extend(aged(r) for r in section_records(resp, 1)
                                    if r.rtype == T.SOA)
        return self._reply(req, result, ede_option(EDE_STALE) if outcome.stale else ede)

    # -- keeping in step with etcd ---------------------------------------------------

    def load(self, index: Index, revision: int) -> None:
        """Swap in a complete snapshot, all at once (start-up and after compaction)."""
        self.authority.index = index
        self.names = index.names
        self.ready = True
        self.shared.answers.clear()
        self._served(revision)

    def apply(self, changes: list[Change], revision: int) -> None:
        """Apply watch events in order, dropping exactly the answers they may change."""
        index, answers = self.authority.index, self.shared.answers
        for change in changes:
            index.apply(change)
            answers.invalidate(change.path)
        self._served(revision)

    def _served(self, revision: int) -> None:
        self.revision = revision
        self.shared.answers.set_revision(revision + self.shared.settings.serial_offset)
        index, etcd = self.authority.index, self.shared.stats.etcd
        etcd.revision, etcd.records, etcd.invalid = revision, len(index), len(index.invalid)


def plain(result: Result) -> Sections:
    """The sections of an unsigned answer: the lookup's records as RRsets."""
    return rrsets(result.answer), rrsets(result.authority), rrsets(result.additional)


def minimal_any(answer: list[RR]) -> list[RR]:
    """RFC 8482 section 4.1: answer ANY over UDP with one RRset, the first we have (address
    records before TXT), so ANY is no bigger than the query for that one type; over TCP,
    where the source address is proven, every RRset is sent."""
    sets = rrsets(answer)
    return sets[0] if sets else []
