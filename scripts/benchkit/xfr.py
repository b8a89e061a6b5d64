"""Benchmark skyserve as a hidden primary (issue 14): ``scripts/bench-xfr --help``.

etcd holds the benchmark's records (h0..hN-1.bench.test., benchkit.dataset); skyserve
transfers bench.test. to 127.0.0.0/8 with a TSIG key and NOTIFYs knot, NSD and named.
Measured, with kdig as the client (wall time of the kdig process, bytes as kdig counts
them): AXFR of a small and a large zone, the first one right after the records came
(so it includes building the zone) and then repeated; an IXFR of ten changes; and etcd
put -> every secondary serving the change, over many changes one after another.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchkit.dataset import PREFIX, ZONE, ip_for, key_for, load_records, new_ip, record
from benchkit.net import etcd_put, query_a, udp_socket
from benchkit.procs import Procs, Server, wait_until
from benchkit.report import fmt, percentile, print_logs
from benchkit.secondaries import KEY_NAME, KEY_SECRET, KINDS, ports, start_secondary
from benchkit.servers import start_etcd, start_skyserve, stop_noting_logs
from benchkit.session import bench_main

KDIG_KEY = f"hmac-sha256:{KEY_NAME}:{KEY_SECRET}"
RECEIVED = re.compile(r";; Received (\d+) B \((\d+) messages?, (\d+) records?\)")
BUILT = re.compile(r"materialized for transfers at revision \d+: (\d+) owners changed, "
                   r"(\d+) records in the zone, ([\d.]+)s")


def kdig(port: int, *query: str, timeout: float = 300) -> tuple[float, str]:
    # +time: kdig's wait for each message; the first one waits for the zone to be built.
    cmd = ["kdig", "@127.0.0.1", "-p", str(port), "-y", KDIG_KEY, "+tcp",
           f"+time={int(timeout)}", *query]
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    took = time.monotonic() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {p.returncode}: {p.stderr.strip()[-300:]}")
    return took, p.stdout


def transfer(port: int, qtype: str) -> dict[str, Any]:
    """One AXFR or IXFR (``IXFR=serial``) of the zone: seconds, bytes, messages, records."""
    took, out = kdig(port, "+noall", "+stats", qtype, ZONE)
    m = RECEIVED.search(out)
    if m is None or "; Transfer failed" in out:
        raise RuntimeError(f"{qtype} of {ZONE}: no transfer statistics in kdig's output:\n"
                           f"{out[-600:]}")
    return {"seconds": took, "bytes": int(m[1]), "messages": int(m[2]),
            "records": int(m[3])}


def serial(port: int) -> int:
    _, out = kdig(port, "+short", "SOA", ZONE, timeout=10)
    return int(out.split()[2])


def wait_answer(srv: Server, name: str, ip: str, timeout: float) -> None:
    sock = udp_socket(srv.port)
    try:
        wait_until(lambda: (got := query_a(sock, name, 0.2)) is not None and ip in got[1],
                   timeout, f"{srv.name} answering {name} with {ip}", srv)
    finally:
        sock.close()


def builds(log: Path) -> list[dict[str, float]]:
    """skyserve's log lines for each pass that brought the zone up to date."""
    return [{"owners": int(m[1]), "records": int(m[2]), "seconds": float(m[3])}
            for m in BUILT.finditer(log.read_text(errors="replace"))]


def axfr_runs(sky: Server, n: int, repeat: int) -> dict[str, Any]:
    print(f"== AXFR of {n:,} records: the first, then {repeat} more", flush=True)
    first = transfer(sky.port, "AXFR")
    again = sorted((transfer(sky.port, "AXFR") for _ in range(repeat)),
                   key=lambda r: float(r["seconds"]))
    return {"first": first, "repeat_median": again[len(again) // 2] if again else None}


def ixfr_run(sky: Server, etcd_port: int, changes: int) -> dict[str, Any]:
    print(f"== IXFR of {changes} changes", flush=True)
    before = serial(sky.port)
    for k in range(changes):
        etcd_put(etcd_port, key_for(k), record(new_ip(k)))
    wait_answer(sky, f"h{changes - 1}.{ZONE}", new_ip(changes - 1), 30)
    return transfer(sky.port, f"IXFR={before}")


def propagation(secs: dict[str, Server], etcd_port: int, first: int,
                args: argparse.Namespace) -> dict[str, Any]:
    """etcd put -> each secondary answering with the new address, one change at a time."""
    print(f"== propagation to {', '.join(secs)}: {args.changes} changes", flush=True)
    socks = {k: udp_socket(s.port) for k, s in secs.items()}
    delays: dict[str, list[float]] = {k: [] for k in secs}
    slowest: list[float] = []
    timeouts = 0
    try:
        for c in range(args.changes):
            i, ip = c % args.small, new_ip(first + c)
            name = f"h{i}.{ZONE}"
            t0 = time.monotonic()
            etcd_put(etcd_port, key_for(i), record(ip))
            waiting = set(secs)
            while waiting and time.monotonic() - t0 < args.change_timeout:
                for k in sorted(waiting):
                    got = query_a(socks[k], name, 0.2)
                    if got is not None and ip in got[1]:
                        delays[k].append((time.monotonic() - t0) * 1e3)
                        waiting.discard(k)
                time.sleep(0.002)
            if waiting:
                timeouts += 1
            else:
                slowest.append((time.monotonic() - t0) * 1e3)
    finally:
        for s in socks.values():
            s.close()
    out: dict[str, Any] = {"changes": args.changes, "timeouts": timeouts}
    for k, v in [*delays.items(), ("all three", slowest)]:
        v.sort()
        out[k] = {"p50_ms": percentile(v, 50), "p99_ms": percentile(v, 99),
                  "max_ms": percentile(v, 100), "n": len(v)}
    return out


def primary_args(notify: dict[str, int]) -> tuple[str, ...]:
    args = ["--transfer", f"{ZONE}=127.0.0.0/8", "--tsig-key",
            f"{KEY_NAME}=hmac-sha256:{KEY_SECRET}", "--transfer-key", f"{ZONE}={KEY_NAME}"]
    if notify:
        args += ["--notify", f"{ZONE}=" + ",".join(f"127.0.0.1:{p}" for p in notify.values())]
    return tuple(args)


def run(args: argparse.Namespace, procs: Procs, work: Path) -> dict[str, Any]:
    res: dict[str, Any] = {"python": args.python, "small": args.small, "large": args.large}
    etcd_port = start_etcd(procs, work)
    etcd_put(etcd_port, f"{PREFIX}/test/bench/dns/ns/ns1", record("127.0.0.1"))
    res["load_small_s"] = load_records(etcd_port, args.small)
    notify = ports(args.secondaries)
    sky = start_skyserve(procs, work, args.python, etcd_port, extra=primary_args(notify))
    res["axfr_small"] = axfr_runs(sky, args.small, args.repeat)
    res["ixfr"] = ixfr_run(sky, etcd_port, 10)
    if args.secondaries and args.changes:
        secs = {k: start_secondary(procs, work, k, p, ZONE, sky.port, args.nsd_reload_timeout)
                for k, p in notify.items()}
        for s in secs.values():  # the first AXFR each secondary makes
            wait_answer(s, f"h{args.small - 1}.{ZONE}", ip_for(args.small - 1), 60)
        res["propagation"] = propagation(secs, etcd_port, 10, args)
        for s in secs.values():
            stop_noting_logs(procs, s, res.setdefault("logs", {}))
    print(f"== {args.large - args.small:,} more records into etcd", flush=True)
    res["load_more_s"] = load_records(etcd_port, args.large, args.small)
    wait_answer(sky, f"h{args.large - 1}.{ZONE}", ip_for(args.large - 1), 120)
    res["axfr_large_grown"] = axfr_runs(sky, args.large, args.repeat)
    res["builds_first_skyserve"] = builds(sky.log)
    stop_noting_logs(procs, sky, res.setdefault("logs", {}))
    # A fresh skyserve over the large zone: the transfer is asked for as soon as it is ready,
    # while the zone is still being built (longer than the default 10 s TCP idle timeout).
    sky = start_skyserve(procs, work, args.python, etcd_port, name="skyserve-restarted",
                         extra=primary_args({}))
    res["axfr_large_restart"] = {"first": transfer(sky.port, "AXFR")}
    res["builds_restarted"] = builds(sky.log)
    stop_noting_logs(procs, sky, res["logs"])
    return res


def _row(label: str, r: dict[str, Any] | None) -> None:
    if r:
        print(f"  {label:<34}{r['seconds']:>9.2f} s{r['bytes']:>13,} B{r['messages']:>7} msgs"
              f"{r['records']:>9,} RRs")


def report(res: dict[str, Any]) -> None:
    print(f"\nzone transfers of {ZONE} (python: {res['python']})")
    for key, n in (("axfr_small", res["small"]), ("axfr_large_grown", res["large"])):
        _row(f"AXFR {n:,}, first", res[key]["first"])
        _row(f"AXFR {n:,}, repeated (median)", res[key]["repeat_median"])
    _row(f"AXFR {res['large']:,}, right after a restart", res["axfr_large_restart"]["first"])
    _row("IXFR of 10 changes", res["ixfr"])
    for key in ("builds_first_skyserve", "builds_restarted"):
        big = max(res[key], key=lambda b: b["owners"], default=None)
        if big:
            print(f"  largest build pass ({key}): {big['owners']:,} owners, "
                  f"{big['records']:,} records, {big['seconds']:.2f} s")
    p = res.get("propagation")
    if p:
        print(f"\netcd put -> secondary serving it, {p['changes']} changes, "
              f"{p['timeouts']} timed out")
        for k, v in p.items():
            if isinstance(v, dict):
                print(f"  {k:<12} p50 {fmt(v['p50_ms'])} ms  p99 {fmt(v['p99_ms'])} ms  "
                      f"max {fmt(v['max_ms'])} ms  (n={v['n']})")
    print_logs(res.get("logs", {}))


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--small", type=int, default=10_000, help="records of the first zone")
    ap.add_argument("--large", type=int, default=100_000, help="records it grows to")
    ap.add_argument("--repeat", type=int, default=3, help="repeated AXFRs of each size")
    ap.add_argument("--changes", type=int, default=200, help="changes for propagation")
    ap.add_argument("--change-timeout", type=float, default=30.0)
    ap.add_argument("--secondaries", nargs="*", default=sorted(KINDS), choices=sorted(KINDS))
    ap.add_argument("--nsd-reload-timeout", type=int, default=1,
                    help="NSD's xfrd-reload-timeout (its default: 1 s between reloads)")
    ap.add_argument("--python", default=sys.executable, help="interpreter for skyserve")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (logs)")
    args = ap.parse_args()
    if not 0 < args.small < args.large:
        ap.error("--small and --large: need 0 < small < large")
    return args


def main() -> int:
    args = parse_args()
    return bench_main("bench-xfr", args.keep, args.json,
                      lambda procs, work: run(args, procs, work), report)
