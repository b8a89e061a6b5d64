"""The watch read from etcd's JSON gateway, against a real etcd: what the gRPC watch it
replaced delivered (puts, deletes, empty values, compaction, refusals), the auth token
passed on, and nothing after a cancel."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

import pytest

from skydns.etcd import Compacted, EtcdClient, EtcdError, EtcdSettings, WatchBatch
from skydns.etcdgateway import open_watch
from tests.support.etcd_server import EtcdServer
from tests.support.secure_etcd import PASSWORD

pytestmark = pytest.mark.e2e

Item = WatchBatch | Exception


def watcher(etcd: EtcdServer) -> tuple[EtcdClient, queue.Queue[Item]]:
    return EtcdClient(EtcdSettings(endpoints=(etcd.endpoint,))), queue.Queue()


def events(got: queue.Queue[Item], count: int) -> list[tuple[str, bytes | None, int]]:
    out: list[tuple[str, bytes | None, int]] = []
    while len(out) < count:
        item = got.get(timeout=10)
        assert isinstance(item, WatchBatch), item
        out += item.events
    return out


def test_puts_deletes_and_empty_values_from_the_start_revision(
    etcd: EtcdServer, clean_prefix: str
) -> None:
    """The gateway leaves an empty value out of its JSON: that is a put of b"", not a
    delete. Keys just past the prefix stay out; earlier revisions are not replayed."""
    client, got = watcher(etcd)
    try:
        etcd.put(f"{clean_prefix}/w/old", "x")
        start = etcd.put(f"{clean_prefix}/w/a", "1")
        client.watch(clean_prefix, start, got.put)
        etcd.put(clean_prefix + "0/outside", "no")
        empty = etcd.put(f"{clean_prefix}/w/é", "")
        gone = etcd.delete(f"{clean_prefix}/w/a")
        assert events(got, 3) == [(f"{clean_prefix}/w/a", b"1", start),
                                  (f"{clean_prefix}/w/é", b"", empty),
                                  (f"{clean_prefix}/w/a", None, gone)]
    finally:
        client.close()
        etcd.delete(clean_prefix + "0/outside")


def test_a_compacted_start_revision_is_reported_as_compacted(fresh_etcd: EtcdServer) -> None:
    first = fresh_etcd.put("/c/a", "1")
    fresh_etcd.put("/c/b", "2")
    fresh_etcd.compact(fresh_etcd.revision())
    client, got = watcher(fresh_etcd)
    try:
        client.watch("/c", first, got.put)
        item = got.get(timeout=10)
        assert isinstance(item, Compacted) and item.revision == fresh_etcd.revision()
        assert got.empty()
    finally:
        client.close()


def test_a_stream_etcd_ends_is_one_error_and_a_cancelled_one_is_silent(
    fresh_etcd: EtcdServer
) -> None:
    client, got = watcher(fresh_etcd)
    quiet: queue.Queue[Item] = queue.Queue()
    try:
        client.watch("/s", fresh_etcd.revision() + 1, got.put)
        cancelled = client.watch("/s", fresh_etcd.revision() + 1, quiet.put)
        client.cancel(cancelled)
        assert [t.name for t in threading.enumerate()].count("etcd-watch") == 1
        fresh_etcd.stop()
        assert isinstance(got.get(timeout=10), EtcdError)
        assert quiet.empty()
    finally:
        client.close()
    assert "etcd-watch" not in [t.name for t in threading.enumerate()]


def test_the_next_endpoint_is_tried_when_one_is_down(etcd: EtcdServer,
                                                     clean_prefix: str) -> None:
    got: queue.Queue[Item] = queue.Queue()
    settings = EtcdSettings(timeout=2.0)
    watch = open_watch(["http://127.0.0.1:1", etcd.endpoint], settings, None,
                       f"{clean_prefix}/".encode(), f"{clean_prefix}0".encode(),
                       etcd.revision() + 1, got.put)
    try:
        at = etcd.put(f"{clean_prefix}/f", "1")
        assert events(got, 1) == [(f"{clean_prefix}/f", b"1", at)]
    finally:
        watch.cancel()
    with pytest.raises(EtcdError):
        open_watch(["http://127.0.0.1:1"], settings, None, b"/x/", b"/x0", 1, got.put)


def test_the_token_is_passed_on_and_a_refused_watch_is_an_error(
    auth_etcd: EtcdServer, etcdctl: Callable[..., str]
) -> None:
    """etcd answers a watch the user may not read with a response that is created and
    cancelled at once: an error through the callback, not a watch that stays silent."""
    root = f"root:{PASSWORD}"
    for argv in (["role", "add", "gw-reader"],
                 ["role", "grant-permission", "gw-reader", "--prefix=true", "read", "/gw-ok/"],
                 ["user", "add", "gw-reader:pw-reader"],
                 ["user", "grant-role", "gw-reader", "gw-reader"]):
        etcdctl(auth_etcd.endpoint, *argv, user=root)
    client = EtcdClient(EtcdSettings(endpoints=(auth_etcd.endpoint,), username="gw-reader",
                                     password="pw-reader"))
    allowed: queue.Queue[Item] = queue.Queue()
    refused: queue.Queue[Item] = queue.Queue()
    try:
        client.watch("/gw-ok", 1, allowed.put)
        client.watch("/gw-secret", 1, refused.put)
        etcdctl(auth_etcd.endpoint, "put", "/gw-ok/a", "1", user=root)
        [(key, value, _)] = events(allowed, 1)
        assert (key, value) == ("/gw-ok/a", b"1")
        error = refused.get(timeout=10)
        assert isinstance(error, EtcdError) and "permission denied" in str(error)
    finally:
        client.close()
