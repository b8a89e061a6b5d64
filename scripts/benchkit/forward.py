"""The forward suite: forwarding with no cache (skyserve vs dnsmasq), cache hits (vs unbound),
--workers 2 vs 1; knot is the upstream of all."""

from __future__ import annotations

import argparse
import random
from pathlib import Path
from typing import Any

from benchkit.dataset import OTHER_ZONE, UP_ZONE, ZONE, write_queries, write_zone
from benchkit.dnsperf import bench_server, clean_run, dnsperf, latency_run
from benchkit.procs import NCPU, Procs, Server
from benchkit.servers import (
    Upstream,
    check_answers,
    sky_metrics,
    start_dnsmasq,
    start_knot,
    start_skyserve,
    start_unbound,
    stop_noting_logs,
)

SKY_CACHE_DEFAULT = 9984  # skyserve's --cache-success default

def warm(srv: Server, qfile: Path, args: argparse.Namespace, up: Upstream,
         n: int) -> list[dict[str, Any]]:
    """Full passes over the query file until one sends at most 1% of its names upstream.

    One pass fills a single cache; with --workers each worker has its own cache and the
    kernel spreads each pass's client ports over them, so a few more passes are needed.
    """
    passes: list[dict[str, Any]] = []
    for k in range(1, args.warm_passes + 1):
        q0 = up.queries()
        st, _ = dnsperf(srv.port, qfile, args, 600, ["-n", "1"])
        d = up.queries() - q0
        passes.append({"completed": st["completed"], "lost": st["lost"], "upstream_queries": d})
        print(f"   {srv.name} warm pass {k}: {st['completed']:.0f} answered, lost "
              f"{st['lost']:.0f}, {d} sent upstream")
        if d <= n // 100:
            break
    return passes

def sky_cache_args(args: argparse.Namespace) -> tuple[str, ...]:
    """skyserve's default cache, unless the default capacity cannot hold every name."""
    size = args.sky_cache_success
    if size == 0:
        if args.records <= SKY_CACHE_DEFAULT:
            return ()
        size = args.records + 1024
        print(f"!! {args.records} names do not fit skyserve's default --cache-success "
              f"{SKY_CACHE_DEFAULT} (dnsperf cycles through the names, so the LRU would "
              f"evict the ones asked next and some queries would go upstream); using "
              f"--cache-success {size}")
    return ("--cache-success", str(size))

def later_rounds(pair: tuple[Server, Server], qfile: Path, args: argparse.Namespace,
                 up: Upstream, what: str) -> list[list[float]]:
    """Rounds 2 to --fwd-rounds of skyserve (``pair[0]``) against its peer, each a clean run
    of both: [skyserve QPS, peer QPS] a round. Which of the two goes first alternates from
    round to round, so that neither always runs on the box as the other left it."""
    rounds = []
    for r in range(2, args.fwd_rounds + 1):
        qps = {srv.name: clean_run(srv.pid, srv.port, qfile, args, [], up,
                                   f"{srv.name} {what}round {r}", args.warmup)[0]["qps"]
               for srv in (pair if r % 2 else pair[::-1])}
        ours, peer = (qps[srv.name] for srv in pair)
        print(f"   round {r}: skyserve {ours:.0f} qps, {pair[1].name} {peer:.0f} qps")
        rounds.append([ours, peer])
    return rounds

def run_forward(args: argparse.Namespace, procs: Procs, work: Path, etcd_port: int,
                rng: random.Random) -> dict[str, Any]:
    n = args.records
    logs: dict[str, Any] = {}
    res: dict[str, Any] = {"fwd_rate": args.fwd_rate, "cache_rate": args.rate, "logs": logs,
                           "ncpu": NCPU, "noisy_pct": args.noisy_pct}
    # TTL 3600 (skyserve's --cache-max-ttl): warmed entries outlive retried runs
    knot = start_knot(procs, work, write_zone(work, n, UP_ZONE, 3600), UP_ZONE,
                      name="knot-upstream", stats=True)
    up = Upstream(knot, work / "knot-upstream" / "knot.conf")
    check_answers(knot, n, UP_ZONE)
    q_up = write_queries(work, n, 0.0, rng, UP_ZONE)  # only names that exist upstream
    q_auth = write_queries(work, n, args.nx_fraction, rng)  # skyserve's etcd zone

    # 1. forwarding, no cache anywhere: every query goes to knot
    print(f"\n#### part 1: forwarding with the cache off (every query to knot :{knot.port})")
    p1: dict[str, Any] = {}
    res["forward"] = p1
    p1["knot_direct"] = latency_run(knot.pid, knot.port, q_up, args, args.fwd_rate,
                                    "knot (the upstream, queried directly)")
    sky = start_skyserve(procs, work, args.python, etcd_port, "skyserve-nocache", OTHER_ZONE,
                         knot.port, ("--cache-success", "0", "--cache-denial", "0"))
    check_answers(sky, n, UP_ZONE)
    dm = start_dnsmasq(procs, work, knot.port, args.dnsmasq_forward_max)
    check_answers(dm, n, UP_ZONE)
    p1["skyserve"] = bench_server(sky, q_up, args, args.fwd_rate, up)
    p1["skyserve"]["metrics"] = sky_metrics(sky)
    p1["dnsmasq"] = bench_server(dm, q_up, args, args.fwd_rate, up)
    # Forwarded QPS on 2 shared cores swings by +-15% from run to run (three busy processes
    # and how the scheduler places them): compare in rounds, judge the median (cache hits
    # too, in part 2).
    p1["rounds"] = [[p1["skyserve"]["qps"], p1["dnsmasq"]["qps"]],
                    *later_rounds((sky, dm), q_up, args, up, "")]
    stop_noting_logs(procs, sky, logs)
    stop_noting_logs(procs, dm, logs)

    # 2. cache hits (and 3. with one worker: the same skyserve also serves the etcd zone)
    print("\n#### part 2: cache hits (caches warmed first), and part 3 with one worker")
    p2: dict[str, Any] = {}
    p3: dict[str, Any] = {}
    res["cache"], res["workers"] = p2, p3
    cache_args = sky_cache_args(args)
    res["skyserve_cache_args"] = list(cache_args)
    sky = start_skyserve(procs, work, args.python, etcd_port, "skyserve-w1", ZONE, knot.port,
                         ("--workers", "1", *cache_args))
    check_answers(sky, n, UP_ZONE)
    check_answers(sky, n, ZONE)
    p2["skyserve_warm"] = warm(sky, q_up, args, up, n)
    p2["skyserve"] = bench_server(sky, q_up, args, args.rate, up, "skyserve-w1 cache hits")
    p2["skyserve"]["metrics"] = sky_metrics(sky)
    p3["w1_cache"] = p2["skyserve"]
    ub = start_unbound(procs, work, knot.port)  # skyserve stays up, idle, for the rounds
    check_answers(ub, n, UP_ZONE)
    p2["unbound_warm"] = warm(ub, q_up, args, up, n)
    p2["unbound"] = bench_server(ub, q_up, args, args.rate, up, "unbound cache hits")
    p2["rounds"] = [[p2["skyserve"]["qps"], p2["unbound"]["qps"]],
                    *later_rounds((sky, ub), q_up, args, up, "cache hits ")]
    stop_noting_logs(procs, ub, logs)
    # After the rounds: its own zone's answers share the answer cache with the hits above.
    p3["w1_auth"] = bench_server(sky, q_auth, args, args.rate, up, "skyserve-w1 authoritative")
    stop_noting_logs(procs, sky, logs)

    # 3. two workers
    print("\n#### part 3: skyserve --workers 2")
    sky = start_skyserve(procs, work, args.python, etcd_port, "skyserve-w2", ZONE, knot.port,
                         ("--workers", "2", *cache_args))
    check_answers(sky, n, UP_ZONE)
    check_answers(sky, n, ZONE)
    p3["w2_warm"] = warm(sky, q_up, args, up, n)
    p3["w2_cache"] = bench_server(sky, q_up, args, args.rate, up, "skyserve-w2 cache hits")
    p3["w2_auth"] = bench_server(sky, q_auth, args, args.rate, up, "skyserve-w2 authoritative")
    p3["w2_cache"]["metrics"] = sky_metrics(sky)
    stop_noting_logs(procs, sky, logs)
    stop_noting_logs(procs, knot, logs)
    return res
