"""Keeps an in-memory index in step with the etcd prefix: load once, then watch.

The loop runs in its own thread, because the etcd client is blocking:

1. connect and read the whole prefix at one revision (retried with backoff, forever);
   decode it into a fresh ``Index`` here, off the serving thread, and hand it over whole;
2. watch from the next revision and hand over each batch of decoded changes, straight
   from the etcd client's watch thread (``_receive``: decoded there and passed on, not
   queued for this thread: each thread a watch response crosses costs a wake-up and a
   turn at the GIL taken from the thread answering queries);
3. on any error reconnect and resume the watch from the last revision seen, so nothing is
   missed or replayed; if that revision was compacted, go back to 1 and swap the new
   snapshot in at once, so answers never go missing in between.

With ``--workers`` the supervisor makes step 1 once, before it forks (``loaded_at``), and
each worker's mirror starts at step 2.

A watch can also go silent without an error (a frozen etcd, a dropped stream). When no
event has arrived for ``probe_interval`` seconds the loop asks etcd whether keys under the
prefix changed after our revision; an error, or changes still unseen at the next probe,
means the stream is dead, and the loop reconnects. That question makes etcd look at every
key under the prefix (its revision filter is applied after the range is read): a quarter
of a core at 1,000,000 keys every 3 s. So it is asked only when etcd's revision (from a
one-key read) has moved past what is already known to hold nothing unseen: an etcd where
nothing is written costs one point read a probe.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from tenacity import wait_exponential_jitter

from skydns.background import Background
from skydns.etcd import Compacted, EtcdClient, EtcdError, EtcdSettings, KeyValue, WatchBatch
from skydns.gcpause import collector_paused
from skydns.record import RecordError, decode_record, key_path

from .index import Change, Index
from .stats import EtcdState

log = logging.getLogger(__name__)


class Sink(Protocol):
    """Where the mirror delivers data: ``loaded`` and ``state`` from the mirror thread,
    ``changed`` from the etcd client's watch thread; never two calls at once."""

    def loaded(self, index: Index, revision: int) -> None: ...

    def changed(self, changes: list[Change], revision: int) -> None: ...

    def state(self, connected: bool, reason: str) -> None: ...


def decode(key: str, value: bytes | None, prefix: str) -> Change | None:
    """An etcd key/value as a change to the index, or None for keys outside the prefix."""
    path = key_path(key, prefix)
    if path is None:
        return None
    if value is None:
        return Change(path, key)
    try:
        return Change(path, key, record=decode_record(key, value))
    except RecordError as exc:
        log.warning("skipping invalid record at %s: %s", key, exc)
        return Change(path, key, invalid=str(exc))


def add_to_index(index: Index, kvs: Iterable[KeyValue], prefix: str) -> None:
    for kv in kvs:
        change = decode(kv.key, kv.value, prefix)
        if change is not None:
            index.apply(change)


def load_index(client: EtcdClient, prefix: str,
               check: Callable[[], None] = lambda: None) -> tuple[Index, int]:
    """The whole prefix as a fresh index, with the revision it was read at. A page at a
    time, so less memory is held at once; ``check`` runs between pages (to leave early)."""
    index, revision = Index(), 0
    with collector_paused():  # an index holds no cycles: the collector's scans find none
        for page, at in client.pages(prefix):
            add_to_index(index, page, prefix)
            revision = at
            check()
    log.info("etcd: loaded %d records at revision %d", len(index), revision)
    return index, revision


class Mirror:
    def __init__(
        self,
        settings: EtcdSettings,
        prefix: str,
        sink: Sink,
        *,
        state: EtcdState | None = None,
        probe_interval: float = 3.0,
        max_backoff: float = 5.0,
        connect: Callable[[EtcdSettings], EtcdClient] = EtcdClient,
        loaded_at: int = 0,
    ) -> None:
        """``loaded_at``: the sink already has a full load made elsewhere at this revision
        (the ``--workers`` supervisor's), so the mirror starts watching right after it."""
        self.settings = settings
        self.prefix = prefix
        self.sink = sink
        self.probe_interval = probe_interval
        self.max_backoff = max_backoff
        self.connect = connect
        self.stats = state if state is not None else EtcdState()
        self.revision = loaded_at  # the last revision applied; 0 = nothing loaded yet
        self.scans = 0  # probes that asked etcd to look at the whole prefix
        if loaded_at:
            self.stats.loads += 1
            self.stats.last_update = time.time()
        self.quiet = False  # shutting down: etcd going away is expected, not a warning
        # What the current watch reports to this thread (errors), and None to wake it up to
        # stop. A watch's batches are delivered only while its queue is ``_watching``.
        self._queue: queue.Queue[Exception | None] = queue.Queue()
        self._watching: queue.Queue[Exception | None] | None = None
        # Held while a batch is delivered and while the watch stops being the current one,
        # so no batch of a watch given up is delivered after that (a reload, a new watch).
        self._lock = threading.Lock()
        self._heard = 0.0  # when the current watch last delivered (monotonic)
        self._thread = Background("etcd-mirror", self._run)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._thread.stop(timeout, wake=lambda: self._queue.put(None))

    def _run(self) -> None:
        retrying = self._thread.retrying(
            EtcdError, wait_exponential_jitter(multiplier=0.05, max=self.max_backoff),
            before_sleep=self._failed)
        while not self._thread.stopping:
            client = retrying(self._connect)
            try:
                self._watch(client)
            except Compacted as exc:
                log.warning("etcd: %s; reloading the whole prefix", exc)
                self.revision = 0
            except EtcdError as exc:
                self._failed_reason(str(exc))
            finally:
                client.close()
            self.stats.watch_restarts += 1

    def _connect(self) -> EtcdClient:
        self._thread.check()
        client = self.connect(self.settings)
        try:
            if self.revision == 0:
                index, revision = load_index(client, self.prefix, self._thread.check)
                self.revision = revision
                self.stats.loads += 1
                self.stats.last_update = time.time()
                self.sink.loaded(index, revision)
            q = self._queue = self._watching = queue.Queue()
            self._heard = time.monotonic()
            client.watch(self.prefix, self.revision + 1, lambda item: self._receive(q, item))
        except BaseException:
            self._forget_watch()
            client.close()
            raise
        self.stats.connected = True
        self.sink.state(True, "")
        return client

    def _watch(self, client: EtcdClient) -> None:
        """Wait for the watch to fail or to fall silent; its batches go past this thread."""
        try:
            self._wait(client)
        finally:
            self._forget_watch()  # before anything else changes: its late batches are stale

    def _wait(self, client: EtcdClient) -> None:
        suspicious = False
        clean = self.revision  # etcd's revision up to which nothing under the prefix is unseen
        last = self._heard  # when the watch last delivered, or we last probed
        while not self._thread.stopping:
            try:
                item = self._queue.get(timeout=max(0.0, last + self.probe_interval
                                                   - time.monotonic()))
            except queue.Empty:
                if self._heard > last:  # it delivered meanwhile: not silent
                    suspicious, last = False, self._heard
                    continue
                unseen, clean = self._probe(client, clean)
                if unseen and suspicious:
                    raise EtcdError("watch silent while etcd has changes unseen") from None
                suspicious, last = unseen, time.monotonic()
                continue
            if item is None:
                return
            raise item if isinstance(item, EtcdError) else EtcdError(str(item))

    def _forget_watch(self) -> None:
        with self._lock:
            self._watching = None

    def _receive(self, q: queue.Queue[Exception | None], item: WatchBatch | Exception) -> None:
        """On the etcd client's watch thread: a batch is decoded and delivered here, unless
        its watch (``q``) is no longer the current one; errors go to the mirror thread."""
        if isinstance(item, Exception):
            q.put(item)
            return
        with self._lock:
            if q is self._watching:
                self._heard = time.monotonic()
                self._deliver(item)

    def _probe(self, client: EtcdClient, clean: int) -> tuple[bool, int]:
        """Whether etcd holds changes under the prefix the watch has not delivered, and
        the revision up to which it holds none (only read in full when etcd moved on)."""
        _, header = client.get_with_header(self.prefix)
        if header.revision <= max(clean, self.revision):
            return False, clean
        self.scans += 1
        unseen = client.changed_since(self.prefix, self.revision)
        return unseen, (clean if unseen else header.revision)

    def _deliver(self, batch: WatchBatch) -> None:
        changes = [c for k, v, _ in batch.events if (c := decode(k, v, self.prefix))]
        revision = max((rev for _, _, rev in batch.events), default=self.revision)
        if revision <= self.revision:
            return
        self.revision = revision
        self.stats.last_update = time.time()
        self.sink.changed(changes, revision)

    def _failed(self, retry_state: object) -> None:
        outcome = getattr(retry_state, "outcome", None)
        exc = outcome.exception() if outcome is not None else None
        self._failed_reason(str(exc))

    def _failed_reason(self, reason: str) -> None:
        if not self.quiet and (self.stats.connected or reason != self.stats.last_error):
            serving = ("serving the last data loaded" if self.stats.loads else
                       "nothing loaded yet: answering SERVFAIL for our zones")
            log.warning("etcd unavailable: %s (%s; retrying)", reason, serving)
        self.stats.connected = False
        self.stats.last_error = reason
        self.sink.state(False, reason)
