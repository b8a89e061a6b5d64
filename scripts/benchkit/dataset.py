"""The benchmark's records: names h0..hN-1 with distinct addresses, as etcd keys, zone files and
dnsperf query files."""

from __future__ import annotations

import json
import random
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchkit.net import etcd_txn_put

ZONE = "bench.test."

UP_ZONE = "up.test."  # served by the upstream knot in --suite forward

OTHER_ZONE = "other.test."  # skyserve's (empty) own zone while it only forwards

PREFIX = "/skydns"

def ip_for(i: int) -> str:
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"

def new_ip(k: int) -> str:  # never collides with ip_for()
    return f"172.{16 + ((k >> 16) & 15)}.{(k >> 8) & 255}.{k & 255}"

def key_for(i: int) -> str:
    return f"{PREFIX}/test/bench/h{i}"

def record(ip: str) -> str:
    return json.dumps({"host": ip, "ttl": 300})

TXN_OPS = 4096  # puts per etcd transaction (benchkit.servers.start_etcd allows that many)

def load_records(etcd_port: int, n: int, start: int = 0) -> float:
    """Put h{start}..h{n-1}; returns the seconds it took.

    Large transactions on two connections: etcd's JSON gateway, not this process, is the
    limit (about 1,000,000 records in 17 s here against 42 s in 128-put transactions)."""
    def put(lo: int) -> None:
        etcd_txn_put(etcd_port, [(key_for(i), record(ip_for(i)))
                                 for i in range(lo, min(n, lo + TXN_OPS))])

    t0 = time.monotonic()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(put, range(start, n, TXN_OPS)))  # list(): raise the first error
    return time.monotonic() - t0

def write_zone(work: Path, n: int, zone: str = ZONE, ttl: int = 300) -> Path:
    path = work / f"{zone}{n}.zone"
    with path.open("w") as f:
        f.write(f"$ORIGIN {zone}\n$TTL {ttl}\n"
                f"@ SOA ns.{zone} hostmaster.{zone} 1 3600 600 86400 60\n"
                f"@ NS ns.{zone}\nns A 127.0.0.1\n")
        f.writelines(f"h{i} A {ip_for(i)}\n" for i in range(n))
    return path

def write_queries(work: Path, n: int, nx_fraction: float, rng: random.Random,
                  zone: str = ZONE) -> Path:
    z = zone.rstrip(".")
    lines = [f"h{i}.{z} A" for i in range(n)]
    if nx_fraction > 0:
        lines += [f"nx{i}.{z} A" for i in range(max(1, int(n * nx_fraction)))]
    rng.shuffle(lines)
    path = work / f"queries-{z}-{n}.txt"
    path.write_text("\n".join(lines) + "\n")
    return path

def write_flood_queries(path: Path, n: int, rng: random.Random, zone: str = ZONE) -> Path:
    """n distinct random names in ``zone``, none of them a record (12 hex digits never spell
    h<i>): every query of a pass is a name the server has not seen, answered NXDOMAIN."""
    z = zone.rstrip(".")
    labels: dict[str, None] = {}  # insertion-ordered, so the seed decides the file
    while len(labels) < n:
        labels.update(dict.fromkeys(f"{rng.getrandbits(48):012x}" for _ in range(n - len(labels))))
    path.write_text("".join(f"{label}.{z} A\n" for label in labels))
    return path
