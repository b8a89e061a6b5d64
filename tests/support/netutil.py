"""Small networking helpers for tests (free ports, loopback HTTP GET, /metrics)."""

from __future__ import annotations

import http.client
import ipaddress
import random
import socket
import threading

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["free_loopback_53", "free_port", "free_port_pair", "http_get", "http_status",
           "metric_families"]

_HOST = "127.0.0.1"
# Ports handed out by this process; never hand out the same port twice so two
# servers started in one test session cannot race for one port.
_handed_out: set[int] = set()
_lock = threading.Lock()


def _ephemeral_range() -> tuple[int, int]:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
            return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


def _is_free(port: int, host: str = _HOST) -> bool:
    """True if `port` can be bound on `host` for both TCP and UDP right now."""
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        # SO_REUSEADDR mirrors what servers do (etcd/Go, asyncio): a port that is
        # only held by TIME_WAIT sockets is usable, one with a listener is not.
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind((host, port))
        udp.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        tcp.close()
        udp.close()


def free_port(host: str = _HOST) -> int:
    """Return a port on 127.0.0.1 that is currently free for BOTH TCP and UDP.

    Ports are drawn at random below the kernel's ephemeral range (so outgoing
    connections cannot grab them between this check and the server's bind),
    and a port is never returned twice by the same process.
    """
    eph_lo, eph_hi = _ephemeral_range()
    lo, hi = (20000, eph_lo - 1) if eph_lo > 21000 else (eph_hi + 1, 65535)
    rng = random.SystemRandom()
    with _lock:
        for _ in range(500):
            port = rng.randint(lo, hi)
            if port in _handed_out:
                continue
            if _is_free(port, host):
                _handed_out.add(port)
                return port
        # Fallback: let the kernel choose, then check UDP too.
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind((host, 0))
                port = int(s.getsockname()[1])
            if port not in _handed_out and _is_free(port, host):
                _handed_out.add(port)
                return port
    raise RuntimeError("could not find a free TCP+UDP port on " + host)


def free_port_pair(host: str = _HOST) -> int:
    """A port P such that P and P+1 are both free (etcd's client and peer ports)."""
    for _ in range(200):
        port = free_port(host)
        with _lock:
            if port + 1 not in _handed_out and _is_free(port + 1, host):
                _handed_out.add(port + 1)
                return port
    raise RuntimeError("could not find two free consecutive ports on " + host)


def http_get(port: int, path: str, timeout: float = 2.0, host: str = _HOST) -> tuple[int, str]:
    """Plain HTTP GET on loopback (bypasses any *_proxy environment settings).

    Returns (status, body). Raises OSError / http.client.HTTPException on
    connection problems or timeouts.
    """
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read().decode("utf-8", "replace")
        return resp.status, body
    finally:
        conn.close()


def http_status(port: int, path: str, timeout: float = 1.0) -> int | None:
    """The status of GET `path` on a loopback port, None if nothing answered.

    For polling a probe (/ready, /health) of a server that may not listen yet."""
    try:
        return http_get(port, path, timeout=timeout)[0]
    except Exception:
        return None


def metric_families(port: int, timeout: float = 2.0) -> list[Metric]:
    """GET /metrics on a loopback port, parsed (Prometheus text format).

    Raises RuntimeError unless the answer is 200, so a broken endpoint fails loudly rather
    than looking like a server without samples."""
    status, body = http_get(port, "/metrics", timeout=timeout)
    if status != 200:
        raise RuntimeError(f"/metrics answered {status}")
    return list(text_string_to_metric_families(body))


def free_loopback_53(n: int, first: int = 100) -> list[str]:
    """Up to ``n`` addresses in 127.0.0.<first>-250 whose port 53 is free for UDP and TCP
    (for clients such as glibc whose configuration has no port); fewer if there are not."""
    found: list[str] = []
    for last in range(first, 251):
        host = str(ipaddress.IPv4Address("127.0.0.0") + last)
        if all(_bindable(host, 53, kind) for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM)):
            found.append(host)
            if len(found) == n:
                break
    return found


def _bindable(host: str, port: int, kind: socket.SocketKind) -> bool:
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True
