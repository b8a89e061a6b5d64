"""``--suite shapes``: skyserve beside knot (one UDP worker) under the load shapes of issue 11,
in alternating rounds, judged on medians:

  repeated  every name of the --records zone in turn, repeated pass after pass (they fit the
            answer cache), at max throughput with ``-c 8`` and each of --shape-outstanding;
  rates     a fixed-rate run at each of --rates (which include --rate): server CPU per query
            and latency percentiles against offered load;
  flood     random-subdomain flood: every query a name never asked before, all NXDOMAIN (a
            new query file per round, so no pass repeats a name);
  cluster   a cluster's queries (benchkit/cluster.py): --records Services in cluster.local
            (skyserve with --cluster-zone), looked up by name, and outside names through
            the search path (NXDOMAIN, new every time);
  zonewide  every name of each of --zone-sizes zones, shuffled, after --zone-warm-passes
            whole passes: max throughput and latency at --rate, the time to ready and RSS
            after the load and after the runs.

Unless --no-floor, the first three also run the floor (benchkit/floor.py: a bare CPython
receive-and-send loop on skyserve's interpreter) in the same rounds: what no one-process
CPython server can beat, so the report can tell a target skyserve misses from one that
none could meet.

The etcd zone only grows (h0..hN-1), so the --records shapes run first, then the zone sizes
in ascending order, each on a fresh pair of servers."""

from __future__ import annotations

import argparse
import random
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchkit import cluster
from benchkit.dataset import ZONE, load_records, write_flood_queries, write_queries, write_zone
from benchkit.dnsperf import clean_run, dnsperf, latency_run
from benchkit.procs import Procs, Server, rss_kb
from benchkit.rounds import Measure, alternate
from benchkit.servers import (
    check_answers,
    start_floor,
    start_knot,
    start_skyserve,
    stop_noting_logs,
)

SHAPES = ("repeated", "rates", "flood", "cluster", "zonewide")

DEFAULT_Q = 100  # dnsperf's own default -q: the shapes of real clients, not of a benchmark
FILE_QPS = 300_000  # queries a new-names file holds per second of --duration (knot: ~250k qps)

def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]

def _shapes(text: str) -> list[str]:
    names = [x.strip() for x in text.split(",") if x.strip()]
    bad = [x for x in names if x not in SHAPES]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown shape(s) {', '.join(bad)}; "
                                         f"choose from {', '.join(SHAPES)}")
    return names

def add_shape_args(ap: argparse.ArgumentParser) -> None:
    g = ap.add_argument_group("--suite shapes")
    g.add_argument("--shapes", type=_shapes, default=list(SHAPES),
                   help=f"comma-separated, of {','.join(SHAPES)} (default: all)")
    g.add_argument("--rounds", type=int, default=3,
                   help="alternating rounds of skyserve and knot per measurement")
    g.add_argument("--shape-outstanding", type=_ints, default=[100, 200],
                   help="dnsperf -q values of the repeated shape (comma-separated)")
    g.add_argument("--rates", type=_ints, default=[5000, 10000, 20000, 40000],
                   help="offered loads (qps) of the rates shape; --rate is added")
    g.add_argument("--zone-sizes", type=_ints, default=[100000, 1000000],
                   help="records of the zonewide shape's zones (each >= --records)")
    g.add_argument("--flood-names", type=int, default=0,
                   help="distinct names per flood query file (one file per round); more "
                   "than a run can send, or names repeat (reported). 0: 300,000 per second "
                   "of --duration, at least 1,000,000 (knot answered 250k qps here)")
    g.add_argument("--zone-warm-passes", type=int, default=1,
                   help="unmeasured passes over every name of a zonewide zone before its "
                   "rounds (each server)")
    g.add_argument("--sky-args", default="",
                   help="extra skyserve options for this suite, e.g. '--cache-success 200000'")
    g.add_argument("--no-floor", dest="floor", action="store_false",
                   help="leave out the floor (a bare CPython receive/send loop) of the "
                   "repeated, rates and flood shapes")
    g.add_argument("--ready-timeout", type=float, default=600,
                   help="seconds to wait for skyserve's /ready on the biggest zone")

def _with_q(args: argparse.Namespace, outstanding: int, **more: Any) -> argparse.Namespace:
    return argparse.Namespace(**{**vars(args), "outstanding": outstanding, **more})

def _brief(st: dict[str, Any]) -> dict[str, Any]:
    """The figures of one accounted dnsperf run that the report and charts use."""
    keep = ("cpu_us_per_query", "cpu_pct", "dnsperf_cpu_pct", "box_busy_pct",
            "others_cpu_pct", "attempt")
    return {"qps": st["qps"], "sent": st["sent"], "completed": st["completed"],
            "lost": st["lost"], "rcodes": st["rcodes"], "cmd": st["cmd"],
            **{k: st["acct"][k] for k in keep}}

def throughput(qfile: Path, args: argparse.Namespace, outstanding: int,
               warmup: float) -> Measure:
    a = _with_q(args, outstanding)

    def measure(srv: Server, r: int) -> dict[str, Any]:
        label = f"{srv.name} -c {a.clients} -q {outstanding}, round {r + 1}"
        print(f"== {label}: max throughput {a.duration:g}s", flush=True)
        x = _brief(clean_run(srv.pid, srv.port, qfile, a, [], None, label, warmup)[0])
        print(f"   {x['qps']:,.0f} qps, {x['cpu_us_per_query'] or 0:.2f} us/query, lost "
              f"{x['lost']:.0f}, {x['rcodes']} (other work {x['others_cpu_pct']:.0f}%)")
        return x
    return measure

def latency(qfile: Path, args: argparse.Namespace, rate: int) -> Measure:
    a = _with_q(args, DEFAULT_Q)

    def measure(srv: Server, r: int) -> dict[str, Any]:
        x = latency_run(srv.pid, srv.port, qfile, a, rate, f"{srv.name} round {r + 1}")
        x.pop("latency_run")  # every dnsperf line's detail: the JSON keeps the figures
        return x
    return measure

def both(*measures: Measure) -> Measure:
    def measure(srv: Server, r: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for m in measures:
            out.update(m(srv, r))
        return out
    return measure

def new_names(write: Callable[[int], tuple[Path, int]], args: argparse.Namespace) -> Measure:
    """Max throughput on a new query file each round (``write(round)``: the file and how
    many queries it holds), shared by the round's servers (each has its own cache). No
    warm-up and no repeated attempt of a disturbed run: either would ask names again."""
    a = _with_q(args, DEFAULT_Q, noisy_retries=0)
    files: dict[int, tuple[Path, int]] = {}

    def measure(srv: Server, r: int) -> dict[str, Any]:
        if r not in files:
            for old, _ in files.values():
                old.unlink(missing_ok=True)
            print(f"   writing the queries of round {r + 1}", flush=True)
            files[r] = write(r)
        path, size = files[r]
        x = throughput(path, a, a.outstanding, 0.0)(srv, r)
        x["names"], x["names_repeated"] = size, x["sent"] > size
        return x
    return measure

def flood(work: Path, args: argparse.Namespace, rng: random.Random) -> Measure:
    """Never-asked names, a new file of them each round."""
    names = args.flood_names or max(1_000_000, int(FILE_QPS * args.duration))
    return new_names(lambda r: (write_flood_queries(work / f"flood-{r}.txt", names, rng), names),
                     args)

@dataclass(frozen=True)
class Served:
    """What a pair of servers answers: a name for their processes, knot's zone file, the
    zone, the check that a server answers it, and skyserve's options for it."""

    name: str
    zone_file: Path
    zone: str = ZONE
    check: Callable[[Server, int], None] = check_answers
    options: tuple[str, ...] = ()

def plain(work: Path, n: int) -> Served:
    """The h0..hN-1 zone (benchkit.dataset)."""
    return Served(str(n), write_zone(work, n))

def run_cluster(res: dict[str, Any], args: argparse.Namespace, procs: Procs, work: Path,
                etcd_port: int, rng: random.Random) -> None:
    """The cluster shape (benchkit/cluster.py): --records Services, a new file each round."""
    n = args.records
    print(f"\n#### a cluster's queries: {n:,} Services, search-path expansions, "
          f"-c {args.clients} -q {DEFAULT_Q}")
    cluster.load_services(etcd_port, n)
    served = Served("cluster", cluster.write_zone(work, n), cluster.ZONE, cluster.check_answers,
                    ("--cluster-zone", cluster.ZONE))
    pair, info = start_pair(procs, work, args, etcd_port, n, served)
    size = int(FILE_QPS * args.duration)

    def write(r: int) -> tuple[Path, int]:
        path = work / f"cluster-{r}.txt"
        return path, cluster.write_queries(path, n, size, rng)
    res["cluster"] = alternate(pair, args.rounds, new_names(write, args))
    res["cluster_info"] = info
    stop_pair(procs, pair, info, res["logs"])

def start_pair(procs: Procs, work: Path, args: argparse.Namespace, etcd_port: int, n: int,
               served: Served) -> tuple[dict[str, Server], dict[str, Any]]:
    """knot on ``served``'s zone file and skyserve on the etcd zone, both answering its n
    names; how long each took to answer and its RSS then."""
    t0 = time.monotonic()
    knot = start_knot(procs, work, served.zone_file, zone=served.zone, name=f"knot-{served.name}")
    served.check(knot, n)
    t1 = time.monotonic()
    sky = start_skyserve(procs, work, args.python, etcd_port, f"skyserve-{served.name}",
                         zone=served.zone,
                         extra=(*served.options, *shlex.split(args.sky_args)),
                         ready_timeout=args.ready_timeout)
    served.check(sky, n)
    t2 = time.monotonic()
    pair = {"skyserve": sky, "knot": knot}
    info = {"skyserve": {"ready_s": t2 - t1}, "knot": {"ready_s": t1 - t0}}
    for role, srv in pair.items():
        info[role]["rss_kb_loaded"] = rss_kb(srv.pid)
    print(f"   {n:,} names ({served.name}): knot answering in {t1 - t0:.1f}s "
          f"({info['knot']['rss_kb_loaded'] / 1024:.0f} MiB), skyserve ready and answering "
          f"in {t2 - t1:.1f}s ({info['skyserve']['rss_kb_loaded'] / 1024:.0f} MiB)")
    return pair, info

def stop_pair(procs: Procs, pair: dict[str, Server], info: dict[str, Any],
              logs: dict[str, Any]) -> None:
    for role, srv in pair.items():
        info[role]["rss_kb_after"] = rss_kb(srv.pid)
        stop_noting_logs(procs, srv, logs)

def run_small(res: dict[str, Any], args: argparse.Namespace, procs: Procs, work: Path,
              etcd_port: int, rng: random.Random) -> None:
    """The shapes on the --records zone: repeated, rates, flood (last: it fills caches)."""
    n = args.records
    pair, info = start_pair(procs, work, args, etcd_port, n, plain(work, n))
    res["zones"][str(n)] = info
    servers = dict(pair)
    if args.floor:
        servers["floor"] = start_floor(procs, work, args.python)
    qfile = write_queries(work, n, 0.0, rng)
    if "repeated" in args.shapes:
        res["repeated"] = {}
        for q in args.shape_outstanding:
            print(f"\n#### repeated names, {n:,} records, -c {args.clients} -q {q}")
            res["repeated"][str(q)] = alternate(servers, args.rounds,
                                                throughput(qfile, args, q, args.warmup))
    if "rates" in args.shapes:
        res["rates"] = {}
        for rate in res["rate_list"]:
            print(f"\n#### fixed rate {rate:,} qps, {n:,} records")
            res["rates"][str(rate)] = alternate(servers, args.rounds, latency(qfile, args, rate))
    if "flood" in args.shapes:
        print(f"\n#### random-subdomain flood, -c {args.clients} -q {DEFAULT_Q}")
        res["flood"] = alternate(servers, args.rounds, flood(work, args, rng))
    stop_pair(procs, pair, info, res["logs"])
    if "floor" in servers:
        stop_noting_logs(procs, servers["floor"], res["logs"])

def warm_passes(pair: dict[str, Server], info: dict[str, Any], qfile: Path,
                args: argparse.Namespace) -> None:
    """Whole passes over the zone's names before the rounds, so that every round sees the
    steady state of a zone-wide mix (what fits the answer cache is in it), not a cold start."""
    a = _with_q(args, DEFAULT_Q)
    for role, srv in pair.items():
        t0 = time.monotonic()
        for _ in range(args.zone_warm_passes):
            dnsperf(srv.port, qfile, a, 3600, ["-n", "1"])
        info[role]["warm_s"] = time.monotonic() - t0
        print(f"   {srv.name}: {args.zone_warm_passes} warm pass(es) over every name in "
              f"{info[role]['warm_s']:.1f}s", flush=True)

def run_zonewide(res: dict[str, Any], args: argparse.Namespace, procs: Procs, work: Path,
                 etcd_port: int, rng: random.Random) -> None:
    loaded = args.records
    res["zonewide"], res["load_s"] = {}, {}
    for n in sorted(args.zone_sizes):
        if n < loaded:
            raise RuntimeError(f"--zone-sizes {n} is below the {loaded:,} records in etcd")
        res["load_s"][str(n)] = load_records(etcd_port, n, loaded)
        print(f"\n#### zone-wide mix, {n:,} records (etcd loaded "
              f"{n - loaded:,} more in {res['load_s'][str(n)]:.1f}s)")
        loaded = n
        pair, info = start_pair(procs, work, args, etcd_port, n, plain(work, n))
        res["zones"][str(n)] = info
        qfile = write_queries(work, n, 0.0, rng)
        if args.zone_warm_passes:
            warm_passes(pair, info, qfile, args)
        measure = both(throughput(qfile, args, DEFAULT_Q, args.warmup),
                       latency(qfile, args, args.rate))
        res["zonewide"][str(n)] = alternate(pair, args.rounds, measure)
        stop_pair(procs, pair, info, res["logs"])
        qfile.unlink()

def run_shapes(args: argparse.Namespace, procs: Procs, work: Path, etcd_port: int,
               rng: random.Random) -> dict[str, Any]:
    res: dict[str, Any] = {
        "shapes": args.shapes, "rounds": args.rounds, "records": args.records,
        "clients": args.clients, "shape_outstanding": args.shape_outstanding, "rate": args.rate,
        "rate_list": sorted({*args.rates, args.rate}), "sky_args": args.sky_args,
        "duration": args.duration, "zones": {}, "logs": {}}
    t0 = time.monotonic()
    if {"repeated", "rates", "flood"} & set(args.shapes):
        run_small(res, args, procs, work, etcd_port, rng)
    if "cluster" in args.shapes:
        run_cluster(res, args, procs, work, etcd_port, rng)
    t1 = time.monotonic()
    if "zonewide" in args.shapes:
        run_zonewide(res, args, procs, work, etcd_port, rng)
    res["elapsed_s"] = {"records_zone_shapes": t1 - t0, "zonewide": time.monotonic() - t1}
    print("\nshapes took " + ", ".join(f"{v:.0f}s ({k})" for k, v in res["elapsed_s"].items()))
    return res
