"""The auth suite's parts of its own: etcd put -> DNS answer propagation, and the skyserve-vs-
reference report."""

from __future__ import annotations

import argparse
import random
import socket
import time
from typing import Any

from benchkit.dataset import ZONE, key_for, new_ip, record
from benchkit.net import etcd_put, query_a, udp_socket
from benchkit.procs import Server
from benchkit.report import fmt, percentile, print_logs


def change_and_wait(sock: socket.socket, etcd_port: int, i: int, ip: str, timeout: float,
                    gap: float = 0.0) -> tuple[float | None, float]:
    """Put a new address for h{i}, then query until it is answered (every ``gap`` s; 0:
    back to back): (put -> answer ms or None on timeout, put RTT ms)."""
    name = f"h{i}.{ZONE}"
    t0 = time.monotonic()
    etcd_put(etcd_port, key_for(i), record(ip))
    put_ms = (time.monotonic() - t0) * 1e3
    deadline = t0 + timeout
    while time.monotonic() < deadline:
        got = query_a(sock, name, 0.2)
        if got is not None and ip in got[1]:
            return (time.monotonic() - t0) * 1e3, put_ms
        if gap:
            time.sleep(gap)
    return None, put_ms

def delay_stats(delays: list[float], put_ms: list[float], timeouts: int) -> dict[str, Any]:
    delays, put_ms = sorted(delays), sorted(put_ms)
    return {"changes": len(delays) + timeouts, "timeouts": timeouts,
            "p50_ms": percentile(delays, 50), "p90_ms": percentile(delays, 90),
            "p99_ms": percentile(delays, 99), "max_ms": percentile(delays, 100),
            "put_p50_ms": percentile(put_ms, 50), "put_p99_ms": percentile(put_ms, 99)}

def propagation(srv: Server, etcd_port: int, args: argparse.Namespace,
                rng: random.Random) -> dict[str, Any]:
    print(f"== skyserve: propagation, {args.changes} changes", flush=True)
    sock = udp_socket(srv.port)
    delays, put_ms, timeouts = [], [], 0
    try:
        for k in range(args.changes):
            delay, put = change_and_wait(sock, etcd_port, rng.randrange(args.records),
                                         new_ip(k), args.change_timeout)
            put_ms.append(put)
            if delay is None:
                timeouts += 1
            else:
                delays.append(delay)
    finally:
        sock.close()
    return delay_stats(delays, put_ms, timeouts)

def report(res: dict[str, Any], ref_name: str) -> None:
    s, r = res.get("skyserve"), res.get("reference")
    rows = [("QPS (max)", "qps", 0), ("lost (max run)", "lost", 0),
            ("CPU us/query", "cpu_us_per_query", 2), ("server CPU %", "cpu_pct", 0),
            ("dnsperf CPU %", "dnsperf_cpu_pct", 0), ("other work %", "others_cpu_pct", 0),
            ("resp size (B)", "resp_size", 0), (f"p50 ms @{res['rate']}", "p50_ms", 3),
            (f"p90 ms @{res['rate']}", "p90_ms", 3), (f"p99 ms @{res['rate']}", "p99_ms", 3),
            (f"max ms @{res['rate']}", "p100_ms", 3), (f"lost @{res['rate']}", "lat_lost", 0),
            (f"other % @{res['rate']}", "lat_others_cpu_pct", 0), ("RSS MiB", "rss_mib", 1)]
    for x in (s, r):
        if x:
            x["rss_mib"] = x["rss_kb"] / 1024
    print(f"\n{'metric':<18}{'skyserve':>12}{ref_name:>12}{'ratio':>9}")
    print("-" * 51)
    for label, key, nd in rows:
        sv, rv = (s or {}).get(key), (r or {}).get(key)
        ratio = fmt(sv / rv, 2) if isinstance(sv, float) and isinstance(rv, float) and rv else "-"
        print(f"{label:<18}{fmt(sv, nd):>12}{fmt(rv, nd):>12}{ratio:>9}")
    pr = res.get("propagation")
    if pr:
        q = {k: fmt(pr[k], 2) for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms", "put_p50_ms")}
        print(f"\npropagation put->answer over {pr['changes']} changes (ms): p50 {q['p50_ms']}"
              f"  p90 {q['p90_ms']}  p99 {q['p99_ms']}  max {q['max_ms']}"
              f"  timeouts {pr['timeouts']}  (etcd put RTT p50 {q['put_p50_ms']})")
    checks: list[tuple[str, bool | None]] = []
    if s and r:
        checks += [("QPS >= 70% of reference", s["qps"] >= 0.7 * r["qps"]),
                   ("CPU/query <= 1.5x reference", (s["cpu_us_per_query"] or 1e9)
                    <= 1.5 * (r["cpu_us_per_query"] or 0))]
    if s:
        checks += [("0 lost (both skyserve runs)", s["lost"] == 0 and s["lat_lost"] == 0),
                   (f"p99 < 0.5 ms at {res['rate']} qps", s["p99_ms"] < 0.5)]
    if pr:
        checks.append(("propagation p99 < 20 ms, no timeouts",
                       pr["timeouts"] == 0 and pr["p99_ms"] < 20))
    if checks:
        print("\ntargets:")
        for text, ok in checks:
            print(f"  [{'PASS' if ok else 'FAIL'}] {text}")
    print_logs(res.get("logs", {}))
