"""The hidden primary: each transferable zone materialized, versioned, and what to send.

The zones stage owns the index; the pipeline tells the primary what changed (``changed``,
``loaded``) and the primary only marks owners dirty then, so a burst of etcd writes costs
nothing until a transfer or a NOTIFY needs the zone. ``current`` brings a zone up to date
in slices of ``SLICE`` owners, yielding to the event loop between them so queries keep
being answered while a large zone is built; a change that lands meanwhile marks its owners
dirty again, so the pass ends only when the zone matches the index. The difference the pass
made becomes one journal version.

The primary outlives reloads (``serve_from`` a new pipeline's zones stage reads the whole
zone again and journals the difference, if any).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

from skydns.record import Labels

from ..index import Change
from ..lookup import Authority, Zone
from ..stats import XfrStats
from ..wire.rr import RR
from .journal import Journal, newer, serial
from .materialize import RRsets, ZoneData
from .message import soa
from .settings import Transfers

log = logging.getLogger(__name__)

SLICE = 2000


class Source(Protocol):
    """What the primary reads: the zones stage."""

    authority: Authority
    ready: bool
    revision: int


class ZoneState:
    def __init__(self, zone: Zone, inner: list[Zone]) -> None:
        self.zone = zone
        self.data = ZoneData(zone, inner)
        self.journal = Journal()
        self.fresh = True  # the next pass starts a new journal
        self.first_change: int | None = None  # revision of the first change not journaled
        self.task: asyncio.Future[None] | None = None


class Primary:
    def __init__(self, transfers: Transfers, zones: list[Zone], stats: XfrStats) -> None:
        self.transfers = transfers
        self.stats = stats
        self.states = {z.text: ZoneState(z, _inner(z, zones)) for z in zones
                       if z.text in transfers.zones}
        self.source: Source | None = None
        self.on_change: Callable[[ZoneState], None] = lambda state: None  # the notifier's
        self._tasks: set[asyncio.Future[None]] = set()

    def state(self, zone: Zone) -> ZoneState | None:
        return self.states.get(zone.text)

    def serial(self) -> int:
        assert self.source is not None
        return serial(self.source.revision, self.transfers.serial_offset)

    # -- what the pipeline tells us --------------------------------------------------

    def serve_from(self, source: Source) -> None:
        """A (new) zones stage to read from: every owner is read again on the next pass."""
        self.source = source
        for state in self.states.values():
            state.data.full = True

    def loaded(self, revision: int) -> None:
        """A whole new snapshot from etcd: a new baseline, older serials get AXFR."""
        for state in self.states.values():
            state.data.full = state.fresh = True
            self.on_change(state)
            # Build it now, not on the first request: a big zone takes seconds.
            self._tasks.add(task := asyncio.ensure_future(self.current(state)))
            task.add_done_callback(self._tasks.discard)

    def changed(self, changes: list[Change], revision: int) -> None:
        for state in self.states.values():
            if any([state.data.mark(c.path) for c in changes]):
                if state.first_change is None:
                    state.first_change = revision
                self.on_change(state)

    # -- bringing a zone up to date ---------------------------------------------------

    async def current(self, state: ZoneState) -> None:
        """Return once the zone's materialization matches the index being served."""
        while state.data.pending:
            if state.task is None or state.task.done():
                state.task = asyncio.ensure_future(self._pass(state))
            await asyncio.shield(state.task)

    async def _pass(self, state: ZoneState) -> None:
        assert self.source is not None
        started = time.monotonic()
        before: dict[Labels, RRsets] = {}
        while True:
            for path, old, _ in state.data.step(self.source.authority, SLICE):
                before.setdefault(path, old)
            if not state.data.pending:
                break
            await asyncio.sleep(0)
        revision = self.source.revision
        if state.fresh:  # a new baseline: no difference to journal (nor to work out)
            state.journal.reset(revision)
            state.fresh = False
        else:
            deleted, added = _difference(before, state.data.owners)
            if deleted or added:
                state.journal.add(state.first_change or revision, revision, deleted, added)
        state.first_change = None
        self.stats.conflicts[state.zone.text] = len(state.data.conflicts)
        self.stats.skipped[state.zone.text] = len(state.data.skipped)
        log.info("zone %s materialized for transfers at revision %d: %d owners changed, "
                 "%d records in the zone, %.2fs", state.zone.text, revision, len(before),
                 state.data.records(), time.monotonic() - started)

    # -- what a transfer sends ---------------------------------------------------------

    def axfr(self, state: ZoneState) -> list[RR]:
        """The whole zone, SOA first and last (call right after ``current``)."""
        assert self.source is not None
        head = soa(self.source.authority, state.zone, self.serial())
        body = [rr for sets in list(state.data.owners.values()) for s in sets for rr in s]
        return [head, *body, head]

    def ixfr(self, state: ZoneState, client: int) -> list[RR] | None:
        """RFC 1995's answer to a client at serial ``client``: one SOA when it is up to
        date, the condensed difference when its serial is journaled, else None (AXFR)."""
        assert self.source is not None
        now = self.serial()
        authority, zone = self.source.authority, state.zone
        head = soa(authority, zone, now)
        if client == now:
            return [head]
        if newer(client, now):
            self.stats.serial_behind += 1
            log.warning("zone %s: a secondary has serial %d, newer than ours (%d): another "
                        "replica is ahead, or etcd was restored from a snapshot (raise "
                        "--serial-offset)", zone.text, client, now)
            return [head]
        found = state.journal.find(client, self.transfers.serial_offset,
                                   self.source.revision)
        if found is None:
            return None
        deleted, added = state.journal.since(found)
        if len(deleted) + len(added) >= state.data.records():
            return None  # the difference is no smaller than the zone
        return [head, soa(authority, zone, client), *deleted, head, *added, head]


def _difference(before: dict[Labels, RRsets],
                after: dict[Labels, RRsets]) -> tuple[list[RR], list[RR]]:
    """The records deleted and added at the owners that changed."""
    deleted: list[RR] = []
    added: list[RR] = []
    for path, old in before.items():
        new = after.get(path, ())
        old_rrs = {rr for s in old for rr in s}
        new_rrs = {rr for s in new for rr in s}
        deleted.extend(rr for s in old for rr in s if rr not in new_rrs)
        added.extend(rr for s in new for rr in s if rr not in old_rrs)
    return deleted, added


def _inner(zone: Zone, zones: list[Zone]) -> list[Zone]:
    """The zones we serve inside ``zone``: their names are theirs, not ``zone``'s."""
    n = len(zone.labels)
    return [z for z in zones if len(z.labels) > n and z.labels[len(z.labels) - n :] == zone.labels]
