"""Fast self-tests of the etcd test fixtures (tests/etcd_server.py, tests/netutil.py)."""

from __future__ import annotations

import socket
import time

import grpc
import pytest

from tests.support.etcd_server import EtcdServer, start_cluster
from tests.support.netutil import free_port


def test_free_port_is_free_for_tcp_and_udp() -> None:
    ports = {free_port() for _ in range(5)}
    assert len(ports) == 5
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", port))
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                udp.bind(("127.0.0.1", port))


@pytest.mark.e2e
def test_session_etcd_is_up(etcd: EtcdServer) -> None:
    assert etcd.running
    assert etcd.endpoint == f"http://127.0.0.1:{etcd.client_port}"
    assert etcd.is_healthy()
    assert etcd.data_dir.is_dir()
    assert etcd.log_path.is_file()


@pytest.mark.e2e
def test_put_get_delete_revisions(etcd: EtcdServer, clean_prefix: str) -> None:
    key = f"{clean_prefix}/local/skydns/a"
    r1 = etcd.put(key, '{"host":"10.0.0.1"}')
    r2 = etcd.put(key, '{"host":"10.0.0.2"}')
    assert r2 == r1 + 1
    assert etcd.revision() >= r2
    assert etcd.get(key) == b'{"host":"10.0.0.2"}'
    assert etcd.get_prefix(clean_prefix + "/") == {key: b'{"host":"10.0.0.2"}'}
    r3 = etcd.delete(key)
    assert r3 > r2
    assert etcd.get(key) is None


@pytest.mark.e2e
def test_clean_prefix_is_unique(clean_prefix: str) -> None:
    assert clean_prefix.startswith("/skydns-t")
    assert not clean_prefix.endswith("/")


@pytest.mark.e2e
def test_restart_keeps_data_and_revision(fresh_etcd: EtcdServer) -> None:
    port, data_dir = fresh_etcd.client_port, fresh_etcd.data_dir
    for i in range(5):
        rev = fresh_etcd.put(f"/k/{i}", str(i))
    fresh_etcd.restart()
    assert (fresh_etcd.client_port, fresh_etcd.data_dir) == (port, data_dir)
    assert fresh_etcd.revision() == rev
    assert fresh_etcd.get("/k/4") == b"4"
    assert fresh_etcd.put("/k/after", "x") == rev + 1


@pytest.mark.e2e
def test_kill_then_start_recovers_from_wal(fresh_etcd: EtcdServer) -> None:
    rev = fresh_etcd.put("/crash/a", "1")
    fresh_etcd.kill()
    assert not fresh_etcd.running
    assert not fresh_etcd.is_healthy(timeout=0.5)
    fresh_etcd.start()
    assert fresh_etcd.revision() == rev
    assert fresh_etcd.get("/crash/a") == b"1"


@pytest.mark.e2e
def test_pause_and_resume(fresh_etcd: EtcdServer) -> None:
    rev = fresh_etcd.put("/p/a", "1")
    fresh_etcd.pause()
    try:
        assert fresh_etcd.paused and fresh_etcd.running
        assert not fresh_etcd.is_healthy(timeout=0.5)
    finally:
        fresh_etcd.resume()
    assert fresh_etcd.put("/p/a", "2") == rev + 1


@pytest.mark.e2e
def test_stop_while_paused(fresh_etcd: EtcdServer) -> None:
    fresh_etcd.pause()
    t0 = time.monotonic()
    fresh_etcd.stop()
    assert not fresh_etcd.running
    assert time.monotonic() - t0 < 4.5  # terminated by SIGTERM, not the SIGKILL fallback


@pytest.mark.e2e
def test_compact(fresh_etcd: EtcdServer) -> None:
    r1 = fresh_etcd.put("/c/a", "1")
    r2 = fresh_etcd.put("/c/a", "2")
    fresh_etcd.put("/c/a", "3")
    fresh_etcd.compact(r2)
    value, _ = fresh_etcd.client().get("/c/a", revision=r2)
    assert value == b"2"
    with pytest.raises(grpc.RpcError) as excinfo:
        fresh_etcd.client().get("/c/a", revision=r1)
    assert excinfo.value.code() == grpc.StatusCode.OUT_OF_RANGE


@pytest.mark.e2e
def test_three_member_cluster_survives_leader_kill(etcd_binary: str) -> None:
    members = start_cluster(3, binary=etcd_binary)
    try:
        assert len({m.client_port for m in members}) == 3
        rev = members[0].put("/cluster/a", "1")
        for m in members:  # every member answers linearizable reads
            assert m.revision() >= rev
        deadline = time.monotonic() + 10
        leaders: list[EtcdServer] = []
        while not leaders and time.monotonic() < deadline:
            leaders = [m for m in members if m.is_leader()]
            time.sleep(0.05)
        assert len(leaders) == 1
        victim = leaders[0]
        victim.kill()
        survivors = [m for m in members if m is not victim]
        rev2 = survivors[0].put("/cluster/b", "2")
        assert rev2 > rev
        assert survivors[1].get("/cluster/b") == b"2"
        assert survivors[1].put("/cluster/c", "3") == rev2 + 1
        # the killed member rejoins with its data dir and catches up
        victim.start()
        assert victim.get("/cluster/c") == b"3"
    finally:
        for m in members:
            m.cleanup()
