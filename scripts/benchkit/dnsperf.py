"""dnsperf runs: one accounted run (server, dnsperf, upstream and machine CPU), retried while
other work disturbs it; throughput and latency."""

from __future__ import annotations

import argparse
import contextlib
import re
import subprocess
import time
from pathlib import Path
from typing import Any

from benchkit.procs import (
    CLK_TCK,
    NCPU,
    Server,
    box_busy_pct,
    box_cpu,
    children_cpu_s,
    context_switches,
    cpu_ticks,
    cpu_ticks_by_pid,
    rss_kb,
    wait_quiet,
)
from benchkit.report import percentile
from benchkit.servers import Upstream


def dnsperf(port: int, qfile: Path, args: argparse.Namespace, duration: float,
            extra: list[str]) -> tuple[dict[str, Any], str]:
    cmd = ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(qfile),
           "-c", str(args.clients), "-q", str(args.outstanding), "-t", "2",
           "-l", str(duration), *extra]
    c0, w0 = children_cpu_s(), time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60, check=False)
    c1, w1 = children_cpu_s(), time.monotonic()
    if p.returncode != 0:
        raise RuntimeError(f"dnsperf failed ({p.returncode}): {p.stderr[-2000:]}")
    # The only child reaped between c0 and c1 is this dnsperf: its own CPU, all threads.
    out, stats = p.stdout, dict[str, Any](cmd=" ".join(cmd), dnsperf_cpu_s=c1 - c0,
                                          wall_s=w1 - w0)
    for key, rx in (("sent", r"Queries sent:\s+(\d+)"),
                    ("completed", r"Queries completed:\s+(\d+)"),
                    ("lost", r"Queries lost:\s+(\d+)"),
                    ("qps", r"Queries per second:\s+([\d.]+)"),
                    ("resp_size", r"Average packet size:.*response (\d+)")):
        m = re.search(rx, out)
        stats[key] = float(m.group(1)) if m else float("nan")
    m = re.search(r"Response codes:\s+(.*)", out)
    stats["rcodes"] = m.group(1).strip() if m else "?"
    return stats, out

def settle(args: argparse.Namespace, label: str) -> float:
    """Give other work on the machine a chance to finish before a measured run."""
    if args.quiet_wait <= 0:
        return box_busy_pct(0.5)
    busy, waited = wait_quiet(args.quiet_wait, args.quiet_pct)
    if waited >= 1.5 or busy > args.quiet_pct:
        print(f"   ({label}: waited {waited:.0f}s for a quiet box; now {busy:.0f}% busy"
              + (", going ahead anyway)" if busy > args.quiet_pct else ")"))
    return busy

def accounted(srv_pid: int, port: int, qfile: Path, args: argparse.Namespace,
              extra: list[str], upstream: Upstream | None) -> tuple[dict[str, Any], str]:
    """One dnsperf run with the CPU of the server (process tree), dnsperf, the upstream and
    the whole machine over it; "others" is what none of them used: other work on the box."""
    up0 = upstream.queries() if upstream else 0
    upt0 = cpu_ticks(upstream.srv.pid) if upstream else 0
    per0, (busy0, tot0) = cpu_ticks_by_pid(srv_pid), box_cpu()
    vol0, invol0 = context_switches(srv_pid)
    t0, w0 = cpu_ticks(srv_pid), time.monotonic()
    st, out = dnsperf(port, qfile, args, args.duration, extra)
    cpu_s, wall = (cpu_ticks(srv_pid) - t0) / CLK_TCK, time.monotonic() - w0
    per1, (busy1, tot1) = cpu_ticks_by_pid(srv_pid), box_cpu()
    vol1, invol1 = context_switches(srv_pid)
    done = st["completed"]
    acct: dict[str, Any] = {
        "cpu_us_per_query": cpu_s * 1e6 / done if done else None,
        "voluntary_switches_per_query": (vol1 - vol0) / done if done else None,
        "involuntary_switches_per_query": (invol1 - invol0) / done if done else None,
        "cpu_pct": 100 * cpu_s / wall,
        "dnsperf_cpu_pct": 100 * st["dnsperf_cpu_s"] / st["wall_s"],
        "box_busy_pct": 100 * (busy1 - busy0) / max(1, tot1 - tot0),  # of all NCPU cores
        "per_process_cpu_pct": {str(pid): round(100 * (per1[pid] - per0.get(pid, 0))
                                                / CLK_TCK / wall, 1) for pid in per1},
    }
    up_s = 0.0
    if upstream:
        acct["upstream_queries"] = upstream.queries() - up0
        acct["upstream_per_answer"] = acct["upstream_queries"] / done if done else None
        up_s = (cpu_ticks(upstream.srv.pid) - upt0) / CLK_TCK
        acct["upstream_cpu_us_per_query"] = up_s * 1e6 / done if done else None
        acct["upstream_cpu_pct"] = 100 * up_s / wall
    acct["others_cpu_pct"] = max(0.0, acct["box_busy_pct"] * NCPU - acct["cpu_pct"]
                                 - acct["dnsperf_cpu_pct"] - 100 * up_s / wall)
    st["acct"] = acct
    return st, out

def clean_run(srv_pid: int, port: int, qfile: Path, args: argparse.Namespace, extra: list[str],
              upstream: Upstream | None, label: str,
              warmup: float = 0.0) -> tuple[dict[str, Any], str]:
    """An accounted run, repeated (up to --noisy-retries times) while other work on the
    machine took more than --noisy-pct of a core during it; the least disturbed one wins."""
    best: tuple[dict[str, Any], str] | None = None
    for attempt in range(args.noisy_retries + 1):
        bg = settle(args, label)
        if warmup > 0:
            dnsperf(port, qfile, args, warmup, [])
        st, out = accounted(srv_pid, port, qfile, args, extra, upstream)
        st["acct"]["background_busy_pct"], st["acct"]["attempt"] = bg, attempt + 1
        others = st["acct"]["others_cpu_pct"]
        if best is None or others < best[0]["acct"]["others_cpu_pct"]:
            best = (st, out)
        if others <= args.noisy_pct:
            break
        print(f"   (other work on the box took {others:.0f}% of a core during that run"
              + ("; repeating it)" if attempt < args.noisy_retries else "; keeping the least"
                 f" disturbed of {attempt + 1} runs)"))
    assert best is not None
    return best

def answer_times(out: str) -> list[float]:
    """Seconds per answered query from ``dnsperf -v`` ("> NOERROR name A 0.000123");
    timed-out queries ("> T name A") have no time and are left out (they count as lost)."""
    times = []
    for ln in out.splitlines():
        if ln.startswith("> "):
            with contextlib.suppress(ValueError):
                times.append(float(ln.rsplit(None, 1)[-1]))
    return times

def latency_run(srv_pid: int, port: int, qfile: Path, args: argparse.Namespace, rate: int,
                label: str, upstream: Upstream | None = None) -> dict[str, Any]:
    """dnsperf at a fixed rate with per-query times (-v): percentiles in ms."""
    print(f"== {label}: latency at {rate} qps for {args.duration}s", flush=True)
    lat, out = clean_run(srv_pid, port, qfile, args, ["-Q", str(rate), "-v"], upstream, label)
    ms = sorted(t * 1e3 for t in answer_times(out))
    res: dict[str, Any] = {"lat_lost": lat["lost"], "lat_qps": lat["qps"],
                           "lat_rcodes": lat["rcodes"],
                           "lat_others_cpu_pct": lat["acct"]["others_cpu_pct"],
                           "lat_cpu_us_per_query": lat["acct"]["cpu_us_per_query"],
                           "lat_voluntary_switches": lat["acct"]["voluntary_switches_per_query"],
                           "lat_involuntary_switches":
                               lat["acct"]["involuntary_switches_per_query"],
                           "latency_run": lat}
    for p in (50, 90, 99, 100):
        res[f"p{p}_ms"] = percentile(ms, p)
    print(f"   p50 {res['p50_ms']:.3f} ms  p99 {res['p99_ms']:.3f} ms  lost {lat['lost']:.0f}"
          f"  rcodes {lat['rcodes']}  (others {res['lat_others_cpu_pct']:.0f}%)")
    return res

def max_run(srv: Server, qfile: Path, args: argparse.Namespace, upstream: Upstream | None,
            label: str) -> dict[str, Any]:
    """Max-throughput run, after an unmeasured warm-up."""
    print(f"== {label}: warmup {args.warmup}s, max-throughput {args.duration}s", flush=True)
    tput, _ = clean_run(srv.pid, srv.port, qfile, args, [], upstream, label, args.warmup)
    res: dict[str, Any] = {
        "qps": tput["qps"], "lost": tput["lost"], "completed": tput["completed"],
        "rcodes": tput["rcodes"], "resp_size": tput["resp_size"], **tput["acct"],
        "throughput_run": tput,
    }
    print(f"   {tput['qps']:.0f} qps, lost {tput['lost']:.0f}, rcodes {tput['rcodes']};"
          f" server {res['cpu_pct']:.0f}% CPU, dnsperf {res['dnsperf_cpu_pct']:.0f}%,"
          f" box busy {res['box_busy_pct']:.0f}% of {NCPU} cores"
          f" (others {res['others_cpu_pct']:.0f}%)"
          + (f"; upstream got {res['upstream_queries']} queries" if upstream else ""))
    return res

def bench_server(srv: Server, qfile: Path, args: argparse.Namespace, rate: int | None = None,
                 upstream: Upstream | None = None, label: str = "") -> dict[str, Any]:
    """Max-throughput run (after an unmeasured warm-up), then a fixed-rate latency run."""
    label, rate = label or srv.name, rate or args.rate
    res = max_run(srv, qfile, args, upstream, label)
    res.update(latency_run(srv.pid, srv.port, qfile, args, rate, label, upstream))
    res["rss_kb"] = rss_kb(srv.pid)
    return res
