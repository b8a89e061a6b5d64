"""The mirror against a real etcd, in this process: a start from a load made elsewhere."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator

import pytest

from skydns.etcd import EtcdSettings, KeyValue
from skyserve.index import Change, Index
from skyserve.mirror import Mirror, load_index
from tests.support.dnsutil import key
from tests.support.etcd_server import EtcdServer

pytestmark = pytest.mark.e2e

HOST = '{"host":"10.30.0.1"}'


class Recorder:
    """A sink that keeps what the mirror hands over."""

    def __init__(self) -> None:
        self.loads: list[tuple[int, int]] = []  # (records, revision)
        self.changes: list[tuple[list[Change], int]] = []
        self.change_threads: set[str] = set()
        self.event = threading.Event()

    def loaded(self, index: Index, revision: int) -> None:
        self.loads.append((len(index), revision))
        self.event.set()

    def changed(self, changes: list[Change], revision: int) -> None:
        self.changes.append((changes, revision))
        self.change_threads.add(threading.current_thread().name)
        self.event.set()

    def state(self, connected: bool, reason: str) -> None:
        pass


def mirror(etcd: EtcdServer, prefix: str, sink: Recorder, loaded_at: int) -> Mirror:
    m = Mirror(EtcdSettings(endpoints=(etcd.endpoint,)), prefix, sink, loaded_at=loaded_at)
    m.start()
    return m


def test_a_mirror_loaded_elsewhere_only_watches_after_that_revision(
    fresh_etcd: EtcdServer, clean_prefix: str
) -> None:
    at = fresh_etcd.put(key(clean_prefix, "a.m.skydns.test"), HOST)
    later = fresh_etcd.put(key(clean_prefix, "b.m.skydns.test"), HOST)
    sink = Recorder()
    m = mirror(fresh_etcd, clean_prefix, sink, at)
    try:
        assert sink.event.wait(10)
        assert sink.loads == []
        assert [(c.key, rev) for cs, rev in sink.changes for c in cs] == \
            [(key(clean_prefix, "b.m.skydns.test"), later)]
        assert m.stats.loads == 1  # the load made elsewhere counts as this mirror's
    finally:
        m.stop()


def test_a_mirror_loaded_at_a_compacted_revision_loads_in_full(
    fresh_etcd: EtcdServer, clean_prefix: str
) -> None:
    at = fresh_etcd.put(key(clean_prefix, "a.m.skydns.test"), HOST)
    fresh_etcd.put(key(clean_prefix, "b.m.skydns.test"), HOST)
    fresh_etcd.put(key(clean_prefix, "c.m.skydns.test"), HOST)
    fresh_etcd.compact(fresh_etcd.revision())  # the watch would start below it
    sink = Recorder()
    m = mirror(fresh_etcd, clean_prefix, sink, at)
    try:
        assert sink.event.wait(10)
        assert sink.loads == [(3, fresh_etcd.revision())]
        assert m.stats.loads == 2
    finally:
        m.stop()


def test_the_silent_watch_probe_reads_the_prefix_only_when_etcd_moved_on(
    fresh_etcd: EtcdServer, clean_prefix: str
) -> None:
    """Reading every key under the prefix costs etcd a quarter of a core at a million keys
    every probe; a quiet etcd must cost one point read a probe instead."""
    at = fresh_etcd.put(key(clean_prefix, "a.m.skydns.test"), HOST)
    sink = Recorder()
    m = Mirror(EtcdSettings(endpoints=(fresh_etcd.endpoint,)), clean_prefix, sink,
               loaded_at=at, probe_interval=0.05)
    m.start()
    try:
        time.sleep(0.6)  # a dozen probes of a quiet etcd
        assert m.scans == 0
        fresh_etcd.put("/elsewhere/x", HOST)  # etcd moves on, nothing of ours changed
        time.sleep(0.6)
        assert m.scans == 1  # one look, then it knows nothing is unseen up to there
        fresh_etcd.put(key(clean_prefix, "b.m.skydns.test"), HOST)  # delivered by the watch
        assert sink.event.wait(5)
        # A probe between the put and its delivery may look once more (etcd moved on and
        # that change was not seen yet); once the watch has delivered it, none does.
        time.sleep(0.1)
        caught_up = m.scans
        time.sleep(0.6)
        assert m.scans == caught_up <= 2 and not sink.loads  # the watch never taken for dead
    finally:
        m.stop()


def test_changes_come_from_the_watch_thread_not_through_the_mirror_thread(
    fresh_etcd: EtcdServer, clean_prefix: str
) -> None:
    """Queued for the mirror thread to decode and pass on, each watch response cost one
    more thread wake-up and turn at the GIL, taken from the thread answering queries."""
    at = fresh_etcd.put(key(clean_prefix, "a.m.skydns.test"), HOST)
    sink = Recorder()
    m = mirror(fresh_etcd, clean_prefix, sink, at)
    try:
        later = fresh_etcd.put(key(clean_prefix, "b.m.skydns.test"), '{"host":"10.30.0.2"}')
        assert sink.event.wait(10)
        [([change], revision)] = sink.changes
        assert revision == later and change.record is not None  # decoded on the way
        assert change.record.host == "10.30.0.2"
        # Straight from the one thread reading etcd's JSON gateway: the gRPC watch's
        # chain of threads (gRPC's, then etcd3's) cost two and a half times the CPU.
        assert sink.change_threads == {"etcd-watch"}
    finally:
        m.stop()


def test_a_full_load_is_decoded_with_the_cyclic_collector_paused() -> None:
    """An index holds no reference cycles, so a load's pages are decoded with the cyclic
    collector off (its scans of the new objects found nothing, and took a quarter of the
    load's time), and it is on again after."""
    seen: list[bool] = []

    class Pages:  # the one method of EtcdClient that load_index uses
        def pages(self, prefix: str) -> Iterator[tuple[Iterator[KeyValue], int]]:
            for n in range(3):
                seen.append(gc.isenabled())
                yield iter([KeyValue(f"{prefix}/test/h{n}", b'{"host":"10.0.0.1"}', n + 1)]), n + 1

    was = gc.isenabled()
    gc.enable()
    try:
        index, revision = load_index(Pages(), "/skydns")  # type: ignore[arg-type]
        assert gc.isenabled()
    finally:
        if not was:
            gc.disable()
    assert seen == [False, False, False]
    assert (len(index), revision) == (3, 3)
