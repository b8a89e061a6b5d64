"""``bench-uncached``: skyserve at an older commit and at this checkout, beside knot, on one
zone, under the shapes the uncached path decides: 10,000 names asked in turn, every name of
the zone shuffled, and a flood of names never asked before (a fresh file per run), each at
full speed and at a fixed rate; alternating rounds, medians of QPS and server CPU per query.

The older commit is checked out with ``git worktree`` into the work directory, and both
skyservers run from their own trees with the same ``--python`` against the same etcd.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import benchkit.servers as servers
from benchkit.dataset import ZONE, load_records, write_zone
from benchkit.procs import Procs, Server, cpu_ticks, rss_kb
from benchkit.worktree import absolute_interpreter, checked_out, running_from

Runs = dict[tuple[str, str], list[tuple[float, float]]]
FLOOD_PER_SECOND = 300_000  # names in a full-speed flood file: more than anyone answers


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="1c8ce93", help="the older commit")
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per dnsperf run")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rate", type=int, default=20_000, help="the fixed rate (QPS)")
    ap.add_argument("--python", default=sys.executable, help="interpreter for skyserve")
    args = ap.parse_args()
    args.python = absolute_interpreter(ap, args.python)
    return args


def dnsperf(srv: Server, qfile: Path, duration: float, rate: int | None) -> tuple[float, float]:
    """(QPS, server CPU microseconds per query) of one run."""
    cmd = ["dnsperf", "-s", "127.0.0.1", "-p", str(srv.port), "-d", str(qfile),
           "-l", str(duration), "-c", "8", "-q", "100", *(["-Q", str(rate)] if rate else [])]
    t0 = cpu_ticks(srv.pid)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    ticks = cpu_ticks(srv.pid) - t0
    done = int(out.split("Queries completed:")[1].split()[0])
    return done / duration, ticks / os.sysconf("SC_CLK_TCK") / max(done, 1) * 1e6


def names(work: Path, label: str, lines: list[str]) -> Path:
    path = work / f"queries-{label}.txt"
    path.write_text("\n".join(f"{line}.{ZONE} A" for line in lines) + "\n")
    return path


def measure(args: argparse.Namespace, trio: list[Server], work: Path) -> Runs:
    rng, n, runs = random.Random(1), args.records, Runs()
    repeat = names(work, "repeat", [f"h{i}" for i in rng.sample(range(n), min(n, 10_000))])
    zonewide = names(work, "zonewide", [f"h{i}" for i in rng.sample(range(n), n)])
    for r in range(args.rounds):
        for srv in trio if r % 2 == 0 else trio[::-1]:
            flood = names(work, "flood", [f"{rng.getrandbits(48):x}" for _ in
                                          range(int(args.duration * FLOOD_PER_SECOND))])
            slow = names(work, "flood-rate", [f"{rng.getrandbits(48):x}" for _ in
                                              range(int(args.duration * args.rate * 1.1))])
            for shape, qfile, rate in (("repeat", repeat, None), ("repeat@rate", repeat, args.rate),
                                       ("zonewide", zonewide, None),
                                       ("zonewide@rate", zonewide, args.rate),
                                       ("flood", flood, None), ("flood@rate", slow, args.rate)):
                runs.setdefault((shape, srv.name), []).append(
                    dnsperf(srv, qfile, args.duration, rate))
        print(f"round {r + 1} of {args.rounds} done", flush=True)
    return runs


def report(args: argparse.Namespace, runs: Runs, rss: dict[str, float]) -> None:
    print(f"\nskyserve at {args.base} (before) and this checkout (after), knot: "
          f"{args.records} records, {args.rounds} rounds of {args.duration:g} s, medians; "
          f"@rate = {args.rate} QPS; python {args.python}")
    print(f"{'shape':<15}" + "".join(f"{n + ' QPS':>14}{'µs/q':>8}" for n in
                                     ("before", "after", "knot")) + "   after/knot QPS, CPU")
    for shape in ("repeat", "repeat@rate", "zonewide", "zonewide@rate", "flood", "flood@rate"):
        med = {name: (statistics.median(q for q, _ in runs[(shape, name)]),
                      statistics.median(c for _, c in runs[(shape, name)]))
               for name in ("before", "after", "knot")}
        cells = "".join(f"{med[n][0]:>14,.0f}{med[n][1]:>8.2f}" for n in med)
        print(f"{shape:<15}{cells}   {med['after'][0] / med['knot'][0]:.2f}, "
              f"{med['after'][1] / med['knot'][1]:.2f}")
    print("RSS MiB after the runs: " + ", ".join(f"{k} {v:.0f}" for k, v in rss.items()))


def main() -> int:
    args = parse_args()
    procs = Procs()
    with tempfile.TemporaryDirectory(dir="/dev/shm") as tmp:
        work = Path(tmp)
        with checked_out(args.base, work / "base") as base:
            try:
                port = servers.start_etcd(procs, work)
                load_records(port, args.records)
                after = servers.start_skyserve(procs, work, args.python, port, name="after")
                with running_from(base):
                    before = servers.start_skyserve(procs, work, args.python, port,
                                                    name="before")
                knot = servers.start_knot(procs, work, write_zone(work, args.records))
                runs = measure(args, [before, after, knot], work)
                rss = {s.name: rss_kb(s.pid) / 1024 for s in (before, after, knot)}
            finally:
                procs.stop_all()
    report(args, runs, rss)
    return 0
