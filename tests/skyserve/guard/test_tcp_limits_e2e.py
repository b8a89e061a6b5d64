"""TCP that a hostile client cannot exhaust (RFC 7766 section 6.2.3), end to end: 2,000
idle connections and a slow sender neither stop UDP answers nor keep new TCP clients out,
a client address holds no more than its share, and idle connections are closed."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import dns.message
import dns.query
import pytest

from tests.support.dnsutil import key
from tests.support.etcd_server import EtcdServer
from tests.support.skyserve_proc import SkyserveProcess

pytestmark = pytest.mark.e2e

Start = Callable[..., SkyserveProcess]
LIMITS = ("--tcp-idle-timeout", "2", "--tcp-max-connections", "100",
          "--tcp-max-per-client", "20")


def connect(port: int, source: str) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
    s.settimeout(0)
    return s


def closed(s: socket.socket) -> bool:
    try:
        return s.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionError:
        return True


def test_idle_hoarders_and_slow_senders_do_not_lock_anyone_out(
        etcd: EtcdServer, clean_prefix: str, skyserve: Start) -> None:
    etcd.put(key(clean_prefix, "www.skydns.test"), '{"host":"10.0.0.1"}')
    proc = skyserve(["skydns.test."], list(LIMITS))
    port = proc.dns_port
    query = dns.message.make_query("www.skydns.test", "A")
    hoard = [connect(port, f"127.88.{i // 20}.{i % 20 + 1}") for i in range(2000)]
    slow = connect(port, "127.89.0.1")
    slow.send(b"\x00")  # half a length prefix, then nothing more
    try:
        assert dns.query.udp(query, "127.0.0.1", port=port, timeout=2).answer
        assert dns.query.tcp(query, "127.0.0.1", port=port, timeout=2,
                             source="127.99.0.1").answer
        # Past the per-client limit a connection is closed at once.
        same = [connect(port, "127.98.0.1") for _ in range(21)]
        time.sleep(0.5)
        assert [closed(s) for s in same].count(True) == 1
        for s in same:
            s.close()
        # The slow sender and the idle ones are closed after the idle timeout.
        time.sleep(3.0)
        assert closed(slow)
        assert all(closed(s) for s in hoard)
    finally:
        for s in [*hoard, slow]:
            s.close()
    def count(reason: str) -> float:
        return proc.metric("skyserve_tcp_closed_connections_total", reason=reason)

    # 2,000 hoarded and at most 100 kept (low, so eviction happens even when a loaded
    # machine accepts slowly): the rest made room, or timed out first.
    assert count("evicted_idle") >= 1 and count("evicted_idle") + count("timeouts") >= 2000
    assert count("refused_per_client") == 1
