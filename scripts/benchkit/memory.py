"""Memory of ``skyserve --workers N`` over a big zone (issue 11): ``scripts/bench-memory --help``.

etcd (on /dev/shm) holds N A records (benchkit.dataset). For each worker count a skyserve
starts and turns ready; then the memory of its processes (supervisor and workers) is read
from /proc/PID/smaps_rollup:

* RSS summed: a page shared by several processes counts once per process (what adding up
  ``ps`` figures gives, and what a naive cgroup reading suggests);
* PSS summed: a shared page is split between its sharers, so the sum is the real total;
* USS: the pages private to each process.

It is read once right after ``/ready`` and again after dnsperf asked every name a few
times: under CPython every lookup writes the reference counts of the objects it touches,
which copies shared pages into the worker that touched them.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchkit.dataset import load_records, write_queries
from benchkit.procs import Procs, Server, descendants, wait_quiet
from benchkit.report import print_logs
from benchkit.servers import start_etcd, start_skyserve, stop_noting_logs
from benchkit.session import bench_main

FIELDS = {"Rss": "rss", "Pss": "pss", "Private_Clean": "uss", "Private_Dirty": "uss"}


def smaps_kb(pid: int) -> dict[str, int]:
    """RSS, PSS and USS (private clean + dirty) of one process, in KiB."""
    out = {"rss": 0, "pss": 0, "uss": 0}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in FIELDS:
            out[FIELDS[name]] += int(rest.split()[0])
    return out


def memory(root: int) -> dict[str, Any]:
    """Totals over root and its descendants, and each process's figures (MiB)."""
    each = {pid: smaps_kb(pid) for pid in [root, *descendants(root)]}
    total = {k: sum(m[k] for m in each.values()) / 1024 for k in ("rss", "pss", "uss")}
    return {**total, "processes": [{k: v / 1024 for k, v in m.items()} for m in each.values()]}


def touch_every_name(srv: Server, qfile: Path, passes: int) -> str:
    """dnsperf through the query file ``passes`` times from 32 sockets, so that the kernel
    spreads every name over the workers (SO_REUSEPORT hashes the client's address)."""
    cmd = ["dnsperf", "-s", "127.0.0.1", "-p", str(srv.port), "-d", str(qfile), "-c", "32",
           "-q", "100", "-n", str(passes), "-t", "2"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    if p.returncode != 0:
        raise RuntimeError(f"dnsperf failed ({p.returncode}): {p.stderr[-2000:]}")
    lost = [line.strip() for line in p.stdout.splitlines() if "Queries lost" in line]
    return lost[0] if lost else "?"


def measure(args: argparse.Namespace, procs: Procs, work: Path, etcd_port: int,
            qfile: Path, workers: int, logs: dict[str, Any]) -> dict[str, Any]:
    busy, _ = wait_quiet(args.quiet_wait, 30)
    t0 = time.monotonic()
    sky = start_skyserve(procs, work, args.python, etcd_port, name=f"skyserve-w{workers}",
                         extra=("--workers", str(workers), *args.skyserve_args))
    ready_s = time.monotonic() - t0
    time.sleep(args.settle)
    res: dict[str, Any] = {"workers": workers, "ready_s": ready_s, "other_work_pct": busy,
           "loaded": memory(sky.pid)}
    res["lost"] = touch_every_name(sky, qfile, args.passes)
    time.sleep(args.settle)
    res["queried"] = memory(sky.pid)
    stop_noting_logs(procs, sky, logs)
    return res


def run(args: argparse.Namespace, procs: Procs, work: Path) -> dict[str, Any]:
    etcd_port = start_etcd(procs, work)
    print(f"== {args.records:,} records into etcd", flush=True)
    load_s = load_records(etcd_port, args.records)
    qfile = write_queries(work, args.records, 0.0, random.Random(1))
    logs: dict[str, Any] = {}
    runs = [measure(args, procs, work, etcd_port, qfile, w, logs) for w in args.workers]
    return {"python": args.python, "args": list(args.skyserve_args),
            "records": args.records, "etcd_load_s": load_s,
            "passes": args.passes, "runs": runs, "logs": logs}


def report(res: dict[str, Any]) -> None:
    print(f"\nskyserve {' '.join(res['args'])} memory, {res['records']:,} records (python: "
          f"{res['python']}); MiB summed over the supervisor and its workers")
    print(f"{'workers':>7} {'ready s':>8} {'other %':>8} | {'RSS':>7} {'PSS':>7} {'USS':>7} |"
          f" after {res['passes']} passes over every name: {'RSS':>7} {'PSS':>7} {'USS':>7}")
    for r in res["runs"]:
        a, b = r["loaded"], r["queried"]
        print(f"{r['workers']:>7} {r['ready_s']:>8.1f} {r['other_work_pct']:>8.0f} | "
              f"{a['rss']:>7.0f} {a['pss']:>7.0f} {a['uss']:>7.0f} |"
              f" {'':>30}{b['rss']:>7.0f} {b['pss']:>7.0f} {b['uss']:>7.0f}")
        per = ", ".join(f"{p['pss']:.0f}" for p in b["processes"])
        print(f"{'':>26}PSS per process after the passes: {per}  ({r['lost']})")
    print_logs(res["logs"])


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--passes", type=int, default=3, help="dnsperf passes over every name")
    ap.add_argument("--settle", type=float, default=2.0, help="seconds before each reading")
    ap.add_argument("--quiet-wait", type=float, default=20.0,
                    help="wait at most this long for a quiet machine before each start")
    ap.add_argument("--cache-entries", type=int, help="skyserve's answer cache size (0: what "
                    "the passes leave is the index and its copied pages, not cached answers)")
    ap.add_argument("--python", default=sys.executable, help="interpreter for skyserve")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (logs)")
    args = ap.parse_args()
    args.skyserve_args = () if args.cache_entries is None else \
        ("--cache-entries", str(args.cache_entries))
    return args


def main() -> int:
    args = parse_args()
    return bench_main("bench-memory", args.keep, args.json,
                      lambda procs, work: run(args, procs, work), report)
