"""leader.py: one writer at a time, takeover after the lease expires, fencing of writes."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from kube2etcd.leader import KEY_PREFIX, Leader
from skydns.etcd import EtcdClient, EtcdSettings
from tests.support.etcd_server import EtcdServer

pytestmark = pytest.mark.e2e


def wait_for(cond: Callable[[], bool], timeout: float) -> float:
    start = time.monotonic()
    while not cond():
        assert time.monotonic() - start < timeout, "timed out"
        time.sleep(0.02)
    return time.monotonic() - start


@pytest.fixture
def leaders(fresh_etcd: EtcdServer) -> Iterator[Callable[[str], Leader]]:
    made: list[Leader] = []

    def make(identity: str) -> Leader:
        leader = Leader(EtcdSettings(endpoints=(fresh_etcd.endpoint,), timeout=1.0),
                        "cluster.local", 2, identity=identity)
        made.append(leader)
        leader.start()
        return leader

    yield make
    for leader in made:
        leader.stop()


def test_one_leader_and_takeover_after_the_lease_expires(
    leaders: Callable[[str], Leader], fresh_etcd: EtcdServer
) -> None:
    a = leaders("a")
    wait_for(a.is_leader, 5)
    b = leaders("b")
    time.sleep(1.0)
    assert a.is_leader() and not b.is_leader()
    assert fresh_etcd.get(KEY_PREFIX + "cluster.local") == b"a"
    # 'a' dies without a word: its thread stops, its lease is left to expire.
    a._thread.stop(2)
    died = time.monotonic()
    wait_for(b.is_leader, 5)
    assert time.monotonic() - died < 2 + 0.5 + 0.5  # TTL + one campaign interval + slack
    assert fresh_etcd.get(KEY_PREFIX + "cluster.local") == b"b"
    # A deposed leader's writes are refused by the guard.
    client = EtcdClient(EtcdSettings(endpoints=(fresh_etcd.endpoint,)))
    try:
        assert client.apply({"/x": "1"}, [], guard=a.guard()) == 0
        assert client.apply({"/x": "1"}, [], guard=b.guard()) == 1
    finally:
        client.close()


def test_a_clean_stop_hands_over_at_once(leaders: Callable[[str], Leader]) -> None:
    a = leaders("a")
    wait_for(a.is_leader, 5)
    b = leaders("b")
    a.stop()
    assert not a.is_leader()
    assert wait_for(b.is_leader, 3) < 1.0
