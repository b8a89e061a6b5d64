"""``bench-intake``: skyserve's CPU to take in a burst of bridge-like writes, at an older
commit and at this checkout, alternating.

Each run starts a fresh etcd and one skyserve on it, writes ``--records`` keys shaped as
kube2etcd writes a cluster's (per Service: its ClusterIP, an SRV port record, two endpoint
addresses and their PTRs, each value with the owner marker) in 127-put transactions from
four writers, waits until skyserve holds them all, and reports the CPU skyserve spent
meanwhile a record: its watch path (the gateway's JSON, decoding, the index). The bridge's
first sync (``bench-bridge --services 100000``, 1.4 million keys) shares two cores between
etcd, the bridge and skyserve, so this is CPU the sync's other parties do not get.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import benchkit.servers as servers
from benchkit.net import etcd_txn_put, scrape
from benchkit.procs import CLK_TCK, Procs, cpu_ticks, rss_kb, wait_until
from benchkit.worktree import absolute_interpreter, checked_out, running_from

TXN_PUTS = 127  # as kube2etcd writes (etcd's default --max-txn-ops is 128)
OWNER = {"kube2etcd": "cluster.local"}


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="the older commit")
    ap.add_argument("--records", type=int, default=300_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--python", default=sys.executable, help="interpreter for skyserve")
    args = ap.parse_args()
    args.python = absolute_interpreter(ap, args.python)
    return args


def bridge_like(n: int) -> list[tuple[str, str]]:
    """``n`` keys and values as kube2etcd writes them, six a Service."""
    out: list[tuple[str, str]] = []
    s = 0
    while len(out) < n:
        ns, name = f"ns{s % 300}", f"svc{s}"
        base = f"/skydns/local/cluster/svc/{ns}/{name}"
        fqdn = f"{name}.{ns}.svc.cluster.local"
        out.append((f"{base}/{s:08x}", _value(host=f"10.96.{s >> 8 & 255}.{s & 255}")))
        out.append((f"{base}/_tcp/_http/{s:08x}", _value(host=fqdn, port=80)))
        for e in range(2):  # endpoint keys and addresses apart from the ClusterIP's
            a, b, c = 16 + 2 * (s >> 16) + e, s >> 8 & 255, s & 255
            out.append((f"{base}/{0x80000000 + s * 2 + e:08x}", _value(host=f"10.{a}.{b}.{c}")))
            out.append((f"/skydns/arpa/in-addr/10/{a}/{b}/{c}",
                        _value(host=f"{s * 2 + e:08x}.{fqdn}")))
        s += 1
    return out[:n]


def _value(**fields: object) -> str:
    return json.dumps({**fields, **OWNER, "ttl": 30})


def one_run(args: argparse.Namespace, tree: Path, label: str,
            kvs: list[tuple[str, str]]) -> float:
    """Skyserve's CPU (µs) a record to take ``kvs`` in from a fresh etcd."""
    procs = Procs()
    with tempfile.TemporaryDirectory(dir="/dev/shm") as tmp:
        work = Path(tmp)
        try:
            port = servers.start_etcd(procs, work)
            with running_from(tree):
                srv = servers.start_skyserve(procs, work, args.python, port, name=label,
                                             zone="cluster.local.")
            before = cpu_ticks(srv.pid)
            t0 = time.monotonic()
            with ThreadPoolExecutor(4) as pool:  # list(): raise the first error
                list(pool.map(lambda lo: etcd_txn_put(port, kvs[lo:lo + TXN_PUTS]),
                              range(0, len(kvs), TXN_PUTS)))
            wrote = time.monotonic() - t0
            metrics = servers.METRICS_PORT[srv.pid]
            wait_until(lambda: scrape(metrics).get("skyserve_records", 0) >= len(kvs), 300,
                       "skyserve holding every record", srv)
            cpu = (cpu_ticks(srv.pid) - before) / CLK_TCK / len(kvs) * 1e6
            print(f"{label}: {cpu:.2f} µs a record (writes took {wrote:.1f} s), "
                  f"RSS {rss_kb(srv.pid) / 1024:.0f} MiB", flush=True)
            return cpu
        finally:
            procs.stop_all()


def main() -> int:
    args = parse_args()
    kvs = bridge_like(args.records)
    runs: dict[str, list[float]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory(dir="/dev/shm") as tmp, \
            checked_out(args.base, Path(tmp) / "base") as base:
        trees = {"before": base, "after": servers.REPO}
        for r in range(args.rounds):
            for label in ("before", "after") if r % 2 == 0 else ("after", "before"):
                runs[label].append(one_run(args, trees[label], label, kvs))
    print(f"\nskyserve taking in {args.records} bridge-like records, {args.rounds} rounds, "
          f"median CPU a record: before ({args.base}) "
          f"{statistics.median(runs['before']):.2f} µs, after (this checkout) "
          f"{statistics.median(runs['after']):.2f} µs; python {args.python}")
    return 0
