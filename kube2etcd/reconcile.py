"""Keeps etcd equal to the desired records: level-triggered, minimal, never from a partial view.

One thread owns the cache and the etcd connection. It takes watcher events off a queue,
marks the record groups they touch dirty, and then writes:

* a **full** pass at start, after any etcd error or failed comparison, when this bridge
  becomes the leader and every ``resync_period``: it reads back every key the bridge owns
  (the values carrying its marker) under its subtrees, computes every group's records,
  and writes the difference, removing orphans left by earlier runs;
* otherwise an **incremental** pass over the dirty groups only, against the owned state it
  remembers from the last full pass.

etcd can also lose the records without the bridge ever seeing an error: an etcd replaced
by a fresh, empty one on the same address while the bridge was idle, or restored from an
older snapshot. Every ``probe_interval`` the bridge therefore reads one key it wrote (the
``dns-version`` record) and looks at the response header: the key gone, another cluster
id, or a revision lower than one already seen mean etcd is not what the bridge remembers,
and the next pass is a full one.

Nothing is written until every watched source has delivered a complete list, so a
half-filled cache can never delete records. Writes are transactions that compare each
touched key with the value the bridge believes is there (absent, or its own value): a key
another writer created or changed is never overwritten or deleted; the failed comparison
just triggers a full pass, which then leaves that key alone. A group's puts and deletes go
into one transaction, puts first, so its names never go empty in between. With leader
election every transaction also checks the leader key, so a deposed leader cannot write.
"""

from __future__ import annotations

import gc
import logging
import queue
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from tenacity import wait_exponential_jitter

from skydns.background import Background
from skydns.etcd import MAX_TXN_OPS, EtcdClient, EtcdError, EtcdSettings, KeyValue
from skydns.record import owner_of

from .cluster import ClusterState, Group
from .etcdcheck import Expected, lost_state
from .leader import Always, Leadership
from .metrics import Metrics
from .objects import Event, Source
from .records import OWNER_FIELD, Domain, kind_of

log = logging.getLogger(__name__)

_WAKE = object()  # queue item: look at the flags again
_T = TypeVar("_T")


class Conflict(Exception):
    """A transaction's comparison failed: etcd is not what we thought."""


@dataclass(frozen=True, slots=True)
class ReconcileSettings:
    resync_period: float = 300.0  # 0: never
    probe_interval: float = 2.0  # check that etcd still holds the records; 0: never
    max_backoff: float = 5.0
    batch_ops: int = MAX_TXN_OPS - 1  # leaves room for the leader comparison


class Reconciler:
    def __init__(
        self,
        zone: Domain,
        etcd: EtcdSettings,
        sources: list[Source],
        metrics: Metrics,
        settings: ReconcileSettings = ReconcileSettings(),
        *,
        leader: Leadership | None = None,
        connect: Callable[[EtcdSettings], EtcdClient] = EtcdClient,
    ) -> None:
        self.zone = zone
        self.etcd = etcd
        self.sources = sources
        self.metrics = metrics
        self.settings = settings
        self.leader: Leadership = leader or Always()
        self.connect = connect
        self.cluster = ClusterState(zone)
        self.dirty: dict[Group, float] = {}  # group -> when its first unwritten change was seen
        self.state: dict[str, str] | None = None  # owned keys in etcd; None: read them back
        self.foreign: set[str] = set()  # keys we want that another writer holds
        self.written: dict[Group, tuple[str, ...]] = {}  # the keys each group last wanted
        self.counts: Counter[str] = Counter()
        self.synced = False  # one full pass succeeded
        self.last_error = ""
        self.full_passes = 0
        self.cluster_id: int | None = None  # the etcd cluster the state was read from
        self.revision = 0  # the highest etcd revision seen since then
        self._probe_key: str | None = None  # a key the bridge wrote, to check it is there
        self._next_probe = 0.0
        self._client: EtcdClient | None = None
        self._op = "connect"  # the etcd operation under way, for the error metric
        self._next_resync = 0.0
        self._queue: queue.Queue[Event | object] = queue.Queue()
        self._thread = Background("reconcile", self._run)

    # -- interface ------------------------------------------------------------------------

    def submit(self, event: Event) -> None:
        """Called by the watcher threads."""
        self._queue.put(event)

    def request_full(self) -> None:
        """Read etcd back and rewrite everything on the next pass (e.g. on becoming leader)."""
        self._next_resync = 0.0
        self._queue.put(_WAKE)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._thread.stop(timeout, wake=lambda: self._queue.put(_WAKE))
        if self._client is not None:
            self._client.close()

    def readiness(self) -> tuple[bool, str]:
        waiting = [str(s) for s in self.sources if s not in self.cluster.listed]
        if waiting:
            return False, "waiting for the first list of " + ", ".join(waiting)
        if not self.leader.is_leader():
            if self.leader.error:  # it could not take over
                return False, f"standby, etcd unavailable: {self.leader.error}"
            return True, "standby"
        if not self.synced:
            why = f" ({self.last_error})" if self.last_error else ""
            return False, "waiting for the first write to etcd" + why
        return True, "ok"

    # -- the loop -------------------------------------------------------------------------

    def _run(self) -> None:
        retrying = self._thread.retrying(
            (EtcdError, Conflict),
            wait_exponential_jitter(multiplier=0.05, max=self.settings.max_backoff, jitter=0.1),
            before_sleep=self._failed)
        while not self._thread.stopping:
            self._absorb(self._idle_timeout())
            if self._thread.stopping or not self.cluster.complete(self.sources):
                continue
            if not self.leader.is_leader():
                self._standby()
                continue
            retrying(self._write)

    def _idle_timeout(self) -> float:
        if self.state is None:
            return 1.0
        due = [t for t, on in ((self._next_resync, self.settings.resync_period),
                               (self._next_probe, self.settings.probe_interval)) if on]
        return max(0.0, min([1.0, *(t - time.monotonic() for t in due)]))

    def _absorb(self, timeout: float) -> None:
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return
        while True:
            if item is not _WAKE:
                self.cluster.apply(item, self.dirty)  # type: ignore[arg-type]
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return

    def _failed(self, retry_state: Any) -> None:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        reason = str(exc)
        if not isinstance(exc, Conflict):
            self.metrics.etcd_ops.labels(self._op, "error").inc()
            if self._client is not None:
                self._client.close()
                self._client = None
        if reason != self.last_error:
            log.warning("etcd: %s (will read etcd back and retry)", reason)
        self.last_error = reason
        self.state = None  # whatever happened, read etcd back before writing again
        # Events that arrived meanwhile are absorbed before the next attempt.
        self._absorb(0.0)

    def _standby(self) -> None:
        self.dirty.clear()
        self.state = None
        if self._client is not None:
            self._client.close()
            self._client = None

    def _write(self) -> None:
        if not self.leader.is_leader():
            return
        if self._client is None:
            self._op = "connect"
            self._client = self.connect(self.etcd)
        now = time.monotonic()
        due = self.settings.resync_period and now >= self._next_resync
        if self.state is not None and not due and self.settings.probe_interval and (
                now >= self._next_probe):
            self._probe(self._client)  # may find etcd lost our records: then a full pass
        if self.state is None or due:
            self._full(self._client)
        elif self.dirty:
            self._incremental(self._client)
        if self.last_error:
            log.info("etcd: writing again")
            self.last_error = ""

    # -- full pass ------------------------------------------------------------------------

    def _load(self, client: EtcdClient) -> tuple[dict[str, str], set[str]]:
        """Everything under the bridge's subtrees: (owned key -> value, other writers' keys)."""
        owner = self.zone.owner
        owned: dict[str, str] = {}
        others: set[str] = set()
        marker = OWNER_FIELD.encode()
        self._op = "load"

        def take(kvs: Iterable[KeyValue]) -> None:
            for kv in kvs:
                if marker in kv.value and owner_of(kv.value, OWNER_FIELD) == owner:
                    owned[kv.key] = kv.value.decode()
                else:
                    others.add(kv.key)

        # A page at a time: a million keys read back whole first cost ~500 MiB at once.
        for prefix in self.zone.owned_prefixes():
            for page, _ in client.pages(prefix):
                take(page)
        version, header = client.get_with_header(self.zone.version_key)
        self.cluster_id, self.revision = header.cluster_id, header.revision
        self.metrics.etcd_ops.labels("load", "ok").inc(len(self.zone.owned_prefixes()) + 1)
        take([version] if version else [])
        return owned, others

    def _full(self, client: EtcdClient) -> None:
        start = time.monotonic()
        dirty, self.dirty = self.dirty, {}
        desired: dict[str, str] = {}
        written: dict[Group, tuple[str, ...]] = {}
        foreign: set[str] = set()
        try:
            owned, others = self._load(client)

            def changed() -> Iterator[tuple[str, str]]:
                """Each group's records as they are computed, the ones etcd lacks sent on
                at once: computing a million records overlaps with etcd committing them."""
                for group in list(self.cluster.groups()):
                    want = self.cluster.desired(group)
                    if want:
                        desired.update(want)
                        written[group] = tuple(want)
                    for key, value in want.items():
                        if key in others:
                            foreign.add(key)
                        elif (found := owned.get(key)) != value:
                            yield key, value
                        elif found is not None:  # as wanted: never asked about again, so
                            del owned[key]  # a restart does not hold every value twice

            def gone() -> Iterator[str]:  # runs after the last put: desired is complete
                yield from (key for key in owned if key not in desired)

            puts, deletes = self._apply(client, changed(), gone(), Expected(owned))
            owned.clear()  # the read-back is done with: free it now
            others.clear()
        except BaseException:
            self.dirty.update(dirty)
            raise
        for key in foreign:  # desired becomes the state: no second dict of every key
            del desired[key]
        self.state = desired
        self.written = written
        if foreign != self.foreign and foreign:
            log.warning("leaving %d keys alone that other writers hold, e.g. %s",
                        len(foreign), sorted(foreign)[0])
        self.metrics.foreign_skipped.inc(len(foreign - self.foreign))
        self.metrics.foreign.set(len(foreign))
        self.foreign = foreign
        self.counts = Counter(kind_of(self.zone, k, v) for k, v in self.state.items())
        version_key = self.zone.version_key
        self._probe_key = version_key if version_key in self.state else next(
            iter(self.state), None)
        now = time.monotonic()
        self._next_probe = now + self.settings.probe_interval
        for seen in dirty.values():
            self.metrics.programming.observe(max(0.0, now - seen))
        self._done("full", start)
        self.full_passes += 1
        if not self.synced:
            log.info("first sync done: %d records in etcd (%d written, %d removed) in %.2fs",
                     len(self.state), puts, deletes, now - start)
            # The cache and state are long-lived and acyclic: keep them out of the cyclic
            # collector's scans, which would otherwise pause every thread now and then.
            gc.collect()
            gc.freeze()
        elif puts or deletes:
            log.info("full resync: %d keys written, %d removed", puts, deletes)
        self.synced = True
        self.metrics.synced.set(1)
        self._next_resync = now + self.settings.resync_period

    # -- probe ----------------------------------------------------------------------------

    def _probe(self, client: EtcdClient) -> None:
        """Check that etcd still holds what the bridge wrote; if not, forget the state."""
        assert self.state is not None
        self._op = "probe"
        key = self._probe_key or self.zone.version_key
        found, header = client.get_with_header(key)
        self.metrics.etcd_ops.labels("probe", "ok").inc()
        self._next_probe = time.monotonic() + self.settings.probe_interval
        reason = lost_state(self.state.get(key), found, header, self.cluster_id, self.revision)
        if not reason:
            self.revision = max(self.revision, header.revision)
            return
        detail = {
            "cluster": f"cluster id {self.cluster_id:x} is now {header.cluster_id:x}"
            if self.cluster_id is not None else "",
            "revision": f"revision {header.revision} after {self.revision}",
            "missing": f"{key} is gone",
        }[reason]
        log.warning("etcd lost the records the bridge wrote (%s): rewriting everything",
                    detail)
        self.metrics.state_lost.labels(reason).inc()
        self.state = None
        self.cluster_id, self.revision = header.cluster_id, header.revision

    # -- incremental pass -----------------------------------------------------------------

    def _incremental(self, client: EtcdClient) -> None:
        assert self.state is not None
        start = time.monotonic()
        state = self.state
        batch: list[tuple[Group, float, dict[str, str], dict[str, str], list[str]]] = []
        ops = 0
        dirty, self.dirty = self.dirty, {}
        try:
            for group, seen in list(dirty.items()):
                want = self.cluster.desired(group)
                puts = {k: v for k, v in want.items()
                        if state.get(k) != v and k not in self.foreign}
                deletes = [k for k in self.written.get(group, ()) if k not in want and k in state]
                if not puts and not deletes:
                    self._remember(group, want)
                    del dirty[group]
                    continue
                if batch and ops + len(puts) + len(deletes) > self.settings.batch_ops:
                    self._flush(client, batch, dirty)
                    batch, ops = [], 0
                batch.append((group, seen, want, puts, deletes))
                ops += len(puts) + len(deletes)
            if batch:
                self._flush(client, batch, dirty)
        except BaseException:
            self.dirty.update(dirty)  # not written yet: still owed (and still timed)
            raise
        self._done("incremental", start)

    def _flush(
        self,
        client: EtcdClient,
        batch: list[tuple[Group, float, dict[str, str], dict[str, str], list[str]]],
        pending: dict[Group, float],
    ) -> None:
        assert self.state is not None
        state = self.state
        puts: dict[str, str] = {}
        for _, _, _, p, _ in batch:
            puts.update(p)
        deletes = [k for _, _, _, _, d in batch for k in d if k not in puts]
        self._apply(client, puts.items(), deletes, Expected(state))
        for key, value in puts.items():
            old = state.get(key)
            if old is not None:
                self.counts[kind_of(self.zone, key, old)] -= 1
            state[key] = value
            self.counts[kind_of(self.zone, key, value)] += 1
        for key in deletes:
            self.counts[kind_of(self.zone, key, state.pop(key))] -= 1
        now = time.monotonic()
        for group, seen, want, _, _ in batch:
            self._remember(group, want)
            self.metrics.programming.observe(max(0.0, now - seen))
            pending.pop(group, None)

    def _remember(self, group: Group, want: dict[str, str]) -> None:
        if want:
            self.written[group] = tuple(want)
        else:
            self.written.pop(group, None)

    # -- shared ---------------------------------------------------------------------------

    def _apply(
        self, client: EtcdClient, puts: Iterable[tuple[str, str]], deletes: Iterable[str],
        expect: Mapping[str, str | None],
    ) -> tuple[int, int]:
        """Write, in transactions; returns how many (puts, deletes) were written."""
        sent: Counter[str] = Counter()

        def counted(items: Iterable[_T], kind: str) -> Iterator[_T]:
            for item in items:
                sent[kind] += 1
                yield item

        self._op = "txn"
        done = client.apply(counted(puts, "put"), counted(deletes, "delete"), expect=expect,
                            guard=self.leader.guard())
        total = sent["put"] + sent["delete"]
        applied_puts = min(done, sent["put"])
        self.metrics.etcd_ops.labels("put", "ok").inc(applied_puts)
        self.metrics.etcd_ops.labels("delete", "ok").inc(done - applied_puts)
        self.metrics.changes.labels("put").inc(applied_puts)
        self.metrics.changes.labels("delete").inc(done - applied_puts)
        if done < total:  # a refused transaction's operations were sent, not done
            self.metrics.etcd_ops.labels("txn", "conflict").inc()
            self.state = None
            raise Conflict(f"{total - done} of {total} writes refused: etcd changed under us")
        self.metrics.etcd_ops.labels("txn", "ok").inc(-(-total // self.settings.batch_ops))
        return sent["put"], sent["delete"]

    def _done(self, mode: str, start: float) -> None:
        self.metrics.reconcile_duration.labels(mode).observe(time.monotonic() - start)
        self.metrics.set_records(self.counts)
        self.metrics.last_sync.set(time.time())
