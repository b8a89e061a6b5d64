"""Benchmark skyserve against C DNS servers (knot, nsd, dnsmasq, unbound) on loopback.

``--suite auth`` (the default): starts its own etcd (data on /dev/shm), loads SkyDNS
records for ``bench.test.``, starts skyserve and the reference server (knot or nsd),
drives both with dnsperf (max throughput and a fixed-rate latency run), measures server
CPU per query and RSS, then measures etcd-put -> DNS-answer propagation delay in skyserve.

``--suite forward``: one knot on loopback serves ``up.test.`` with the same number of
records and is the upstream of everything below, side by side in one run:
  1. forwarding with no cache: skyserve (cache off) vs dnsmasq (cache-size=0), every
     query forwarded; QPS, CPU per query, latency at --fwd-rate and the latency skyserve
     adds over knot's own (knot measured directly at the same rate);
  2. cache hits: skyserve (cache on) vs unbound (forward-zone to knot), both warmed with
     full passes over the query file until a pass sends (almost) nothing upstream;
  3. skyserve --workers 2 vs --workers 1 on authoritative answers (the etcd zone) and on
     cache hits, with dnsperf's own CPU and the machine's idle time, to tell whether the
     load generator (not skyserve) was the limit.
Knot's mod-stats counts the queries that really reached the upstream in every run.

``--suite shapes``: skyserve beside knot under issue 11's load shapes (dnsperf's default
``-q 100`` beside ``-q 200``, fixed rates, a random-subdomain flood, every name of big zones),
in alternating rounds, medians, ratios against the targets (see benchkit/shapes.py);
``--charts DIR`` draws them as PNGs (needs matplotlib: the ``bench`` extra), and
``--charts-from results.json`` redraws and reprints a saved run without starting anything.
``--suite churn``: skyserve alone, quiet and while etcd changes --churn-rate times a
second, with put -> answer propagation sampled meanwhile (scripts/benchkit/churn.py).

``--suite all`` runs auth and forward. Everything it starts is stopped by PID in a ``finally``
block. Stdlib only: etcd is driven through its JSON gateway (/v3/kv/...), so any python3
can run this script.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchkit.auth import propagation, report
from benchkit.churn import report_churn, run_churn
from benchkit.dataset import load_records, write_queries, write_zone
from benchkit.dnsperf import bench_server
from benchkit.forward import run_forward
from benchkit.forward_report import report_forward
from benchkit.procs import Procs, interpreter_version, rss_kb
from benchkit.servers import (
    REPO,
    check_answers,
    start_etcd,
    start_knot,
    start_nsd,
    start_skyserve,
    stop_noting_logs,
)
from benchkit.session import on_sigterm, run_session
from benchkit.shapes import add_shape_args, run_shapes
from benchkit.shapes_report import report_shapes


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", choices=["auth", "forward", "all", "shapes", "churn"],
                    default="auth",
                    help="auth: skyserve vs knot/nsd + propagation; forward: forwarding, "
                    "cache hits and workers vs dnsmasq/unbound; all: both; shapes: issue "
                    "11's load shapes vs knot; churn: skyserve quiet vs under etcd churn")
    ap.add_argument("--churn-rate", type=int, default=1000, help="etcd puts/s (churn suite)")
    ap.add_argument("--churn-batch", type=int, default=10,
                    help="puts per etcd transaction of the churn writer (1: single puts, "
                    "which one writer cannot send 1,000 a second of on a busy 2-core box)")
    ap.add_argument("--probe-rate", type=float, default=20.0,
                    help="propagation probes/s during the churn runs (churn suite)")
    ap.add_argument("--records", type=int, default=10000)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per dnsperf run")
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds of unmeasured load")
    ap.add_argument("--rate", type=int, default=20000,
                    help="qps of the latency run (auth suite, cache hits, workers)")
    ap.add_argument("--fwd-rate", type=int, default=10000,
                    help="qps of the latency run with the cache off (forward suite, part 1)")
    ap.add_argument("--dnsmasq-forward-max", type=int, default=1000)
    ap.add_argument("--fwd-rounds", type=int, default=5,
                    help="alternating max-throughput rounds in the forward suite: skyserve "
                    "and dnsmasq forwarding (part 1), skyserve and unbound cache hits "
                    "(part 2); the targets are judged on the median ratios")
    ap.add_argument("--sky-cache-success", type=int, default=0,
                    help="skyserve --cache-success in the forward suite (0: its default, "
                    "raised to hold every name when --records exceeds it)")
    ap.add_argument("--quiet-wait", type=float, default=30.0,
                    help="before each measured run, wait up to this long for the machine to be "
                    "at most --quiet-pct busy (other work skews the figures); 0: don't")
    ap.add_argument("--quiet-pct", type=float, default=15.0)
    ap.add_argument("--noisy-retries", type=int, default=2,
                    help="repeat a measured run this many times at most while other work "
                    "on the machine took more than --noisy-pct of a core during it")
    ap.add_argument("--noisy-pct", type=float, default=15.0)
    ap.add_argument("--warm-passes", type=int, default=10,
                    help="most full passes to warm a cache (stops at <= 1%% misses)")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--outstanding", type=int, default=200)
    ap.add_argument("--changes", type=int, default=1000)
    ap.add_argument("--change-timeout", type=float, default=2.0)
    ap.add_argument("--nx-fraction", type=float, default=0.05)
    ap.add_argument("--reference", choices=["knot", "nsd"], default="knot")
    ap.add_argument("--only", choices=["skyserve", "reference", "both"], default="both")
    ap.add_argument("--python", default=sys.executable, help="interpreter for skyserve")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", type=Path, help="write all results here")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (logs)")
    ap.add_argument("--charts", type=Path, metavar="DIR",
                    help="draw the shapes suite's results as PNGs into DIR (needs matplotlib)")
    ap.add_argument("--charts-from", type=Path, metavar="JSON", nargs="+",
                    help="start nothing: reprint and (with --charts) redraw saved --json "
                    "results of the shapes suite (several: shapes run separately, merged)")
    add_shape_args(ap)
    return ap.parse_args()

def code_state() -> str:
    """The commit checked out and a hash of skyserve's sources as they are on disk now."""
    h = hashlib.sha256()
    for f in sorted((REPO / "skyserve").rglob("*.py")):
        h.update(f.relative_to(REPO).as_posix().encode() + b"\0" + f.read_bytes())
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10,
                              check=False).stdout.strip()
    except OSError:
        head = ""
    return f"{head or '?'} (skyserve/*.py sha256 {h.hexdigest()[:12]})"

def run(args: argparse.Namespace, procs: Procs, work: Path) -> dict[str, Any]:
    rng = random.Random(args.seed)
    res: dict[str, Any] = {"code_at_start": code_state(), "suite": args.suite,
                           "records": args.records,
                           "duration": args.duration, "rate": args.rate,
                           "reference_server": args.reference, "logs": {}}
    res["python"], res["python_version"] = args.python, interpreter_version(args.python)
    print(f"skyserve interpreter: {args.python}  ({res['python_version']})")
    etcd_port = start_etcd(procs, work)
    res["load_s"] = load_records(etcd_port, args.records)
    print(f"etcd on :{etcd_port}, loaded {args.records} records in {res['load_s']:.2f}s")
    if args.suite in ("auth", "all"):
        qfile = write_queries(work, args.records, args.nx_fraction, rng)
        if args.only in ("reference", "both"):
            zone = write_zone(work, args.records)
            ref = (start_knot if args.reference == "knot" else start_nsd)(procs, work, zone)
            check_answers(ref, args.records)
            res["reference"] = bench_server(ref, qfile, args)
            stop_noting_logs(procs, ref, res["logs"])  # keep the machine quiet for skyserve
        if args.only in ("skyserve", "both"):
            sky = start_skyserve(procs, work, args.python, etcd_port)
            check_answers(sky, args.records)
            res["skyserve"] = bench_server(sky, qfile, args)
            if args.changes > 0:
                res["propagation"] = propagation(sky, etcd_port, args, rng)
                res["skyserve"]["rss_kb_after_changes"] = rss_kb(sky.pid)
            stop_noting_logs(procs, sky, res["logs"])
    if args.suite in ("forward", "all"):
        res["forward_suite"] = run_forward(args, procs, work, etcd_port, rng)
    if args.suite == "shapes":
        res["shapes"] = run_shapes(args, procs, work, etcd_port, rng)
    if args.suite == "churn":
        qfile = write_queries(work, args.records, args.nx_fraction, rng)
        res["churn_suite"] = run_churn(args, procs, work, etcd_port, qfile)
    res["code_at_end"] = code_state()
    return res

def main() -> int:
    args = parse_args()
    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIG_IGN

    def body(procs: Procs, work: Path) -> None:
        res = run(args, procs, work)
        print(f"\nskyserve: {res['python']} ({res['python_version'].split()[0]}), "
              f"{args.records} records, {args.duration:g} s per run, "
              f"dnsperf -c {args.clients} -q {args.outstanding}")
        print(f"code: {res['code_at_start']}")
        if res["code_at_end"] != res["code_at_start"]:
            print(f"!! skyserve's sources CHANGED during the run (now {res['code_at_end']}):"
                  " servers started at different times ran different code")
        if args.suite in ("auth", "all"):
            report(res, args.reference)
        if args.suite == "shapes":
            report_shapes(res["shapes"], interpreter(res))
        if args.suite in ("forward", "all"):
            report_forward(res["forward_suite"])
        if args.suite == "churn":
            report_churn(res["churn_suite"], args.rate)
        if args.json:
            args.json.write_text(json.dumps(res, indent=2) + "\n")
        if "shapes" in res:
            shapes_output(res, args.charts)

    if args.charts and importlib.util.find_spec("matplotlib") is None:
        print("bench-dns: --charts needs matplotlib (pip install -e '.[bench]')", file=sys.stderr)
        return 2
    if args.charts_from:
        res = merge_saved(args.charts_from)
        print(f"code: {res['code_at_start']}; skyserve interpreter: {interpreter(res)}")
        report_shapes(res["shapes"], interpreter(res))
        shapes_output(res, args.charts)
        return 0
    return run_session("bench-dns", args.keep, body)

def merge_saved(paths: list[Path]) -> dict[str, Any]:
    """Saved shapes results as one: the first file's settings, every file's shapes (a shape
    in a later file replaces the same one in an earlier file)."""
    res: dict[str, Any] = json.loads(paths[0].read_text())
    for path in paths[1:]:
        more = json.loads(path.read_text())
        if more["python"] != res["python"]:
            print(f"!! {path}: skyserve ran on {more['python']}, not {res['python']}")
        for key, part in more["shapes"].items():
            if isinstance(part, dict):
                res["shapes"].setdefault(key, {}).update(part)
    return res

def interpreter(res: dict[str, Any]) -> str:
    return f"{res['python']}, {res['python_version'].split()[0]}"

def shapes_output(res: dict[str, Any], charts: Path | None) -> None:
    """The shapes suite's charts, if asked for."""
    if charts:
        from benchkit.charts import draw  # matplotlib: only when charts are asked for

        for path in draw(res, charts):
            print(f"chart: {path}")
