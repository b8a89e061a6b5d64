"""Loopback clients: free ports, HTTP status and Prometheus scrapes, etcd's JSON gateway
(/v3/kv/...), a minimal DNS A-query client."""

from __future__ import annotations

import base64
import http.client
import json
import random
import socket
import struct
import threading
import time
import urllib.error
import urllib.request


def free_port() -> int:
    """A loopback port free for both TCP and UDP right now."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind(("127.0.0.1", 0))
            port = int(t.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind(("127.0.0.1", port))
                except OSError:
                    continue
        return port
    raise RuntimeError("no free port")

def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except (OSError, http.client.HTTPException):
        return 0

def scrape(port: int) -> dict[str, float]:
    """Prometheus text from 127.0.0.1:port/metrics, summed per metric name over all labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, _, value = line.rpartition(" ")
        name = name_labels.split("{", 1)[0]
        try:
            out[name] = out.get(name, 0.0) + float(value)
        except ValueError:
            continue
    return out

_conns: dict[tuple[int, int], http.client.HTTPConnection] = {}  # per port and thread

def _etcd(port: int, path: str, body: dict[str, object]) -> None:
    at = (port, threading.get_ident())
    conn = _conns.get(at) or http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    _conns[at] = conn
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    if resp.status != 200:
        raise RuntimeError(f"etcd {path}: HTTP {resp.status}: {data[:300]!r}")

def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()

def etcd_put(port: int, key: str, value: str) -> None:
    _etcd(port, "/v3/kv/put", {"key": _b64(key), "value": _b64(value)})

def etcd_txn_put(port: int, kvs: list[tuple[str, str]]) -> None:
    ops = [{"requestPut": {"key": _b64(k), "value": _b64(v)}} for k, v in kvs]
    _etcd(port, "/v3/kv/txn", {"success": ops})

def udp_socket(port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect(("127.0.0.1", port))
    return s

def _skip_name(buf: bytes, off: int) -> int:
    while True:
        n = buf[off]
        if n == 0:
            return off + 1
        if n & 0xC0 == 0xC0:
            return off + 2
        off += 1 + n

def query_a(sock: socket.socket, name: str, timeout: float) -> tuple[int, list[str]] | None:
    """Send one A query; return (rcode, [A addresses]) or None on timeout."""
    qid = random.randrange(65536)
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\0"
    try:
        sock.send(struct.pack(">6H", qid, 0x0100, 1, 0, 0, 0) + qname + struct.pack(">2H", 1, 1))
    except ConnectionRefusedError:  # ICMP from an earlier query: nobody listening yet
        return None
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            buf = sock.recv(65535)
        except (TimeoutError, ConnectionRefusedError):
            return None
        rid, flags, qd, an = struct.unpack(">4H", buf[:8])
        if rid != qid:
            continue  # late answer to an earlier query
        off = 12
        for _ in range(qd):
            off = _skip_name(buf, off) + 4
        ips = []
        for _ in range(an):
            off = _skip_name(buf, off)
            rtype, _cls, _ttl, rdlen = struct.unpack(">HHIH", buf[off:off + 10])
            off += 10
            if rtype == 1 and rdlen == 4:
                ips.append(socket.inet_ntoa(buf[off:off + 4]))
            off += rdlen
        return flags & 0xF, ips
    return None
