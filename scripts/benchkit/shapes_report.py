"""The shapes suite's report: medians of skyserve and knot per shape, skyserve/knot ratios (the
median of each round's ratio) against issue 11's targets, and the verdict. Where the floor
(benchkit/floor.py) ran, its row follows skyserve's, and a target the floor itself misses is
named: no one-process CPython server can meet it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from benchkit.report import fmt, print_logs, verdict
from benchkit.rounds import paired_ratio

ROLES = ("skyserve", "knot")

@dataclass(frozen=True)
class Target:
    """A bound on the skyserve/knot ratio (``on_ratio``) or on skyserve's own value."""

    op: str  # ">=", "<=" or "<"
    bound: float
    on_ratio: bool = True

    def met(self, v: float) -> bool:
        return {">=": v >= self.bound, "<=": v <= self.bound, "<": v < self.bound}[self.op]

    def __str__(self) -> str:
        return f"{'ratio' if self.on_ratio else 'skyserve'} {self.op} {self.bound:g}"

class Table:
    """Rows of skyserve | knot | ratio | target, and the targets' verdicts gathered on the way."""

    def __init__(self) -> None:
        self.checks: list[tuple[str, bool | None]] = []
        self.beyond: list[str] = []  # targets the floor itself misses
        self.shape = ""  # of the rows that follow with an empty shape
        print(f"\n{'shape':<30}{'metric':<22}{'skyserve':>12}{'knot':>12}{'ratio':>8}"
              f"  target")
        print("-" * 104)

    def row(self, shape: str, metric: str, sky: Any, knot: Any, ratio: float | None, nd: int,
            target: Target | None = None) -> None:
        self.shape = shape or self.shape
        judged = ratio if target is None or target.on_ratio else sky
        ok = None if target is None or not isinstance(judged, float | int) \
            else target.met(judged)
        mark = "-" if ok is None else "PASS" if ok else "FAIL"
        _line(shape, metric, sky, knot, ratio, nd, "" if target is None else f"{target} {mark}")
        if target is not None:
            shown = fmt(judged, 2 if target.on_ratio else 3)
            self.checks.append((f"{self.shape}: {metric} {target} ({shown})", ok))

    def rounds(self, shape: str, block: dict[str, Any], metric: str, key: str, nd: int,
               target: Target | None = None) -> None:
        """A row of medians over the rounds of an alternate() block."""
        med = [block[r]["median"].get(key) for r in ROLES]
        ratio = paired_ratio(block["skyserve"]["rounds"], block["knot"]["rounds"], key)
        self.row(shape, metric, med[0], med[1], ratio, nd, target)
        if "floor" in block:
            self.floor(block, metric, key, nd, target)

    def floor(self, block: dict[str, Any], metric: str, key: str, nd: int,
              target: Target | None) -> None:
        """The floor's row (in skyserve's column, its ratio to knot); a ratio target it
        misses is noted, not judged."""
        value = block["floor"]["median"].get(key)
        ratio = paired_ratio(block["floor"]["rounds"], block["knot"]["rounds"], key)
        beyond = (target is not None and target.on_ratio and isinstance(ratio, float)
                  and not target.met(ratio))
        _line("", "  floor", value, block["knot"]["median"].get(key), ratio, nd,
              f"floor misses {target}" if beyond else "")
        if beyond:
            self.beyond.append(f"{self.shape}: {metric} {target} (the floor: {fmt(ratio, 2)})")

    def others(self, shape: str, block: dict[str, Any]) -> None:
        """The most other work on the machine took during any of the block's runs."""
        worst = [max((max(x.get("others_cpu_pct", 0), x.get("lat_others_cpu_pct", 0))
                      for x in block[r]["rounds"]), default=None) for r in ROLES]
        self.row(shape, "other work % (max)", worst[0], worst[1], None, 0)

def _line(shape: str, metric: str, ours: Any, knot: Any, ratio: float | None, nd: int,
          tag: str) -> None:
    print(f"{shape:<30}{metric:<22}{fmt(ours, nd):>12}{fmt(knot, nd):>12}{fmt(ratio, 2):>8}  {tag}")

def _info_rows(t: Table, shape: str, info: dict[str, Any],
               rss_target: float | None = None) -> None:
    s, k = info["skyserve"], info["knot"]
    t.row(shape, "ready s (start->answer)", s["ready_s"], k["ready_s"], None, 1)
    if "warm_s" in s:
        t.row("", "warm pass(es) s", s["warm_s"], k["warm_s"], None, 1)
    for key, label in (("rss_kb_loaded", "RSS MiB after load"),
                       ("rss_kb_after", "RSS MiB after runs")):
        if key in s:
            sv, kv = s[key] / 1024, k[key] / 1024
            t.row("", label, sv, kv, sv / kv if kv else None, 1,
                  Target("<=", rss_target, on_ratio=False) if rss_target else None)

def _repeated(t: Table, res: dict[str, Any]) -> None:
    for q, block in res["repeated"].items():
        shape = f"repeated {res['records']:,}, -q {q}"
        main = q == "100"  # the targets are for dnsperf's default -q
        t.rounds(shape, block, "QPS (max)", "qps", 0, Target(">=", 0.9) if main else None)
        t.rounds("", block, "CPU us/query", "cpu_us_per_query", 2,
                 Target("<=", 1.3) if main else None)
        t.rounds("", block, "lost", "lost", 0)
        t.others("", block)

def _rates(t: Table, res: dict[str, Any]) -> None:
    for rate, block in res["rates"].items():
        fixed = int(rate) == res["rate"]
        shape = f"{'fixed ' if fixed else ''}{int(rate):,} qps, {res['records']:,}"
        t.rounds(shape, block, "CPU us/query", "lat_cpu_us_per_query", 2,
                 Target("<=", 1.3) if fixed else None)
        # Per query, over the server's threads: a run whose reading thread its client
        # preempts (involuntary) costs less CPU than one that sleeps (docs/benchmarks.md).
        t.rounds("", block, "switches/q, slept", "lat_voluntary_switches", 2)
        t.rounds("", block, "switches/q, preempted", "lat_involuntary_switches", 2)
        for p in (50, 90, 99):
            t.rounds("", block, f"p{p} ms", f"p{p}_ms", 3)
        t.rounds("", block, "lost", "lat_lost", 0)
        t.others("", block)

def _zonewide(t: Table, res: dict[str, Any]) -> None:
    rss_limit = {100000: 100.0, 1000000: 800.0}  # the memory targets, MiB
    for n, block in res["zonewide"].items():
        shape = f"zone-wide {int(n):,}"
        t.rounds(shape, block, "QPS (max, -q 100)", "qps", 0, Target(">=", 0.7))
        t.rounds("", block, "CPU us/query", "cpu_us_per_query", 2)
        t.rounds("", block, "lost", "lost", 0)
        t.rounds("", block, f"CPU us/q @{res['rate']:,}", "lat_cpu_us_per_query", 2)
        for p in (50, 99):
            t.rounds("", block, f"p{p} ms @{res['rate']:,}", f"p{p}_ms", 3,
                     Target("<", 1.0, on_ratio=False) if p == 99 else None)
        t.rounds("", block, f"lost @{res['rate']:,}", "lat_lost", 0)
        t.others("", block)
        _info_rows(t, "", res["zones"][n], rss_limit.get(int(n)))

def _new_names(t: Table, block: dict[str, Any], name: str, rcodes: set[str], why: str) -> None:
    """The rows below the QPS row of a shape run on a new query file each round
    (``shapes.new_names``), and its checks: both servers answered with ``rcodes`` only,
    and no run went round its file (``why``: what that would mean)."""
    t.rounds("", block, "CPU us/query", "cpu_us_per_query", 2)
    t.rounds("", block, "lost", "lost", 0)
    t.others("", block)
    runs = [x for r in ROLES for x in block[r]["rounds"]]
    said = " and ".join(sorted(rcodes))
    said = f"all {said}" if len(rcodes) == 1 else f"{said} only"
    t.checks.append((f"check: {name} answers {said} (both servers, every round)",
                     all(set(re.findall(r"([A-Z]+) \d+", x["rcodes"])) == rcodes for x in runs)))
    for role in ROLES:
        again = sum(x["names_repeated"] for x in block[role]["rounds"])
        t.checks.append((f"check: no {role} {name} run went round its query file ({again} "
                         f"did: {why})", again == 0))

def _flood(t: Table, res: dict[str, Any]) -> None:
    block = res["flood"]
    t.rounds(f"flood (new names), {res['records']:,}", block, "QPS (max, -q 100)", "qps", 0,
             Target(">=", 0.7))
    _new_names(t, block, "flood", {"NXDOMAIN"}, "a name asked twice; --flood-names was less "
               "than it sent")

def _cluster(t: Table, res: dict[str, Any]) -> None:
    """Not one of the issue's targets: how the first-time answers of a cluster's own zone
    compare, beside the flood's and the zone-wide mix's."""
    block = res["cluster"]
    t.rounds(f"cluster, {res['records']:,} Services", block, "QPS (max, -q 100)", "qps", 0)
    _new_names(t, block, "cluster", {"NOERROR", "NXDOMAIN"}, "search-path names asked "
               "twice; the file was less than it sent")
    _info_rows(t, "", res["cluster_info"])

def report_shapes(res: dict[str, Any], python: str) -> None:
    print(f"\nSHAPES: skyserve ({python}) beside knot with one UDP worker; medians of "
          f"{res['rounds']} alternating rounds of {res['duration']:g} s, dnsperf -c "
          f"{res['clients']}; ratio = median of the rounds' skyserve/knot ratios"
          + (f"; skyserve {res['sky_args']}" if res.get("sky_args") else ""))
    t = Table()
    for key, part in (("repeated", _repeated), ("rates", _rates), ("flood", _flood),
                      ("cluster", _cluster)):
        if key in res:
            part(t, res)
    if str(res["records"]) in res["zones"]:
        _info_rows(t, f"servers of the {res['records']:,} zone", res["zones"][str(res["records"])])
    if "zonewide" in res:
        _zonewide(t, res)
    print("\ntargets (issue 11):")
    verdict(t.checks)
    if t.beyond:
        print("\nout of reach of a one-process CPython server (the floor misses them too):")
        for text in t.beyond:
            print(f"  {text}")
    print_logs(res["logs"])
