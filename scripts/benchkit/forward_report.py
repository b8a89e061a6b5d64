"""The forward suite's report: one table per part and the verdict on its targets."""

from __future__ import annotations

import re
import statistics
from typing import Any

from benchkit.procs import NCPU
from benchkit.report import disturbed, print_logs, table, verdict


def bad_rcodes(rcodes: str) -> int:
    """Answers other than NOERROR/NXDOMAIN in dnsperf's "Response codes:" line."""
    return sum(int(c) for name, c in re.findall(r"([A-Z]+) (\d+)", rcodes)
               if name not in ("NOERROR", "NXDOMAIN"))

def _derive(x: dict[str, Any] | None, base_p50: float | None = None) -> dict[str, Any]:
    if not x:
        return {}
    x["rss_mib"] = x["rss_kb"] / 1024 if "rss_kb" in x else None
    x["bad_rcodes"] = bad_rcodes(x.get("rcodes", "")) + bad_rcodes(x.get("lat_rcodes", ""))
    x["cores"] = x["cpu_pct"] / 100 if "cpu_pct" in x else None
    if base_p50 is not None and "p50_ms" in x:
        x["added_p50_ms"] = x["p50_ms"] - base_p50
    return x

def _ratio(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, av in a.items():
        bv = b.get(k)
        if (isinstance(av, float | int) and isinstance(bv, float | int)
                and not isinstance(av, bool) and bv):
            out[k] = float(av) / float(bv)
    return out

def summed_rounds(rounds: list[list[float]], peer: str) -> tuple[float, str]:
    """The alternating rounds' max QPS, skyserve / ``peer``, printed; their median ratio,
    and how a verdict line says it."""
    ratios = sorted(sky / other for sky, other in rounds)
    median = statistics.median(ratios)
    print(f"max QPS in alternating rounds (skyserve / {peer}): "
          + ", ".join(f"{sky:,.0f} / {other:,.0f} = {sky / other:.2f}" for sky, other in rounds))
    return median, (f"median ratio of {len(rounds)} rounds {median:.2f}; "
                    f"range {ratios[0]:.2f}-{ratios[-1]:.2f}")


def report_forward(res: dict[str, Any]) -> None:
    p1, p2, p3 = res["forward"], res["cache"], res["workers"]
    fr, cr = res["fwd_rate"], res["cache_rate"]
    knot = p1["knot_direct"]
    s1, d1 = _derive(p1["skyserve"], knot["p50_ms"]), _derive(p1["dnsmasq"], knot["p50_ms"])
    table(f"PART 1: forwarding, cache off (knot upstream; latency at {fr} qps)",
          [("skyserve", s1, False), ("dnsmasq", d1, False), ("sky/dnsmasq", _ratio(s1, d1), True),
           ("knot direct", _derive(knot), False)],
          [("QPS (max)", "qps", 0), ("lost (max run)", "lost", 0),
           ("SERVFAIL/REFUSED/other", "bad_rcodes", 0),
           ("upstream q per answer", "upstream_per_answer", 3),
           ("server CPU us/query", "cpu_us_per_query", 2), ("server CPU % (1 core)", "cpu_pct", 0),
           ("knot CPU us/query", "upstream_cpu_us_per_query", 2),
           ("dnsperf CPU %", "dnsperf_cpu_pct", 0),
           (f"box busy % of {NCPU} cores", "box_busy_pct", 0),
           ("other work on box %", "others_cpu_pct", 0),
           (f"p50 ms @{fr}", "p50_ms", 3), (f"p90 ms @{fr}", "p90_ms", 3),
           (f"p99 ms @{fr}", "p99_ms", 3), (f"max ms @{fr}", "p100_ms", 3),
           ("added p50 ms (vs knot)", "added_p50_ms", 3), (f"lost @{fr}", "lat_lost", 0),
           (f"server CPU us/q @{fr}", "lat_cpu_us_per_query", 2),
           (f"other work % @{fr}", "lat_others_cpu_pct", 0),
           ("RSS MiB", "rss_mib", 1)])
    noisy = res["noisy_pct"]
    median, said = summed_rounds(p1.get("rounds") or [[s1["qps"], d1["qps"]]], "dnsmasq")
    print("targets:" + disturbed(noisy, s1, d1, knot))
    verdict([
        (f"forwarded QPS >= dnsmasq's ({said})", median >= 1.0),
        (f"added latency p50 < 0.2 ms (skyserve p50 {s1['p50_ms']:.3f} - knot p50 "
         f"{knot['p50_ms']:.3f} = {s1['added_p50_ms']:.3f} ms)", s1["added_p50_ms"] < 0.2),
        ("check: every query forwarded (upstream queries per answer >= 0.99, both)",
         min(s1["upstream_per_answer"] or 0, d1["upstream_per_answer"] or 0) >= 0.99),
        ("check: skyserve lost 0 and answered no SERVFAIL/REFUSED",
         s1["lost"] == 0 and s1["lat_lost"] == 0 and s1["bad_rcodes"] == 0)])

    s2, u2 = _derive(p2["skyserve"]), _derive(p2["unbound"])
    s2["warm_passes"], u2["warm_passes"] = len(p2["skyserve_warm"]), len(p2["unbound_warm"])
    table(f"PART 2: cache hits (warmed; latency at {cr} qps)"
          + (f"; skyserve {' '.join(res['skyserve_cache_args'])}"
             if res["skyserve_cache_args"] else "; skyserve default cache"),
          [("skyserve", s2, False), ("unbound", u2, False), ("sky/unbound", _ratio(s2, u2), True)],
          [("QPS (max)", "qps", 0), ("lost (max run)", "lost", 0),
           ("SERVFAIL/REFUSED/other", "bad_rcodes", 0),
           ("warm passes", "warm_passes", 0),
           ("upstream q (max run)", "upstream_queries", 0),
           ("server CPU us/query", "cpu_us_per_query", 2), ("server CPU % (1 core)", "cpu_pct", 0),
           ("dnsperf CPU %", "dnsperf_cpu_pct", 0),
           (f"box busy % of {NCPU} cores", "box_busy_pct", 0),
           ("other work on box %", "others_cpu_pct", 0),
           (f"p50 ms @{cr}", "p50_ms", 3), (f"p90 ms @{cr}", "p90_ms", 3),
           (f"p99 ms @{cr}", "p99_ms", 3), (f"max ms @{cr}", "p100_ms", 3),
           (f"lost @{cr}", "lat_lost", 0),
           (f"server CPU us/q @{cr}", "lat_cpu_us_per_query", 2),
           (f"other work % @{cr}", "lat_others_cpu_pct", 0),
           ("RSS MiB", "rss_mib", 1)])
    hit_median, said = summed_rounds(p2.get("rounds") or [[s2["qps"], u2["qps"]]], "unbound")
    print("targets:" + disturbed(noisy, s2, u2))
    verdict([
        (f"cache-hit QPS >= 90% of unbound's ({said})", hit_median >= 0.9),
        ("check: all hits (upstream got < 0.1% of the max run's queries, both)",
         max(s2["upstream_per_answer"] or 0, u2["upstream_per_answer"] or 0) < 0.001),
        ("check: skyserve lost 0 and answered no SERVFAIL/REFUSED",
         s2["lost"] == 0 and s2["lat_lost"] == 0 and s2["bad_rcodes"] == 0)])

    a1, a2 = _derive(p3["w1_auth"]), _derive(p3["w2_auth"])
    c1, c2 = p3["w1_cache"], _derive(p3["w2_cache"])
    for x in (a1, a2, c1, c2):
        per = x.get("per_process_cpu_pct", {})
        x["split"] = "/".join(f"{v:.0f}" for v in per.values()) if len(per) > 1 else "-"
    table(f"PART 3: skyserve --workers 2 vs 1 (latency at {cr} qps)",
          [("auth w1", a1, False), ("auth w2", a2, False), ("w2/w1", _ratio(a2, a1), True),
           ("cache w1", c1, False), ("cache w2", c2, False), ("w2/w1", _ratio(c2, c1), True)],
          [("QPS (max)", "qps", 0), ("lost (max run)", "lost", 0),
           ("SERVFAIL/REFUSED/other", "bad_rcodes", 0),
           ("upstream q (max run)", "upstream_queries", 0),
           ("server CPU us/query", "cpu_us_per_query", 2),
           ("server cores used", "cores", 2),
           ("CPU % sup/w1/w2", "split", 0),
           ("dnsperf CPU %", "dnsperf_cpu_pct", 0),
           (f"box busy % of {NCPU} cores", "box_busy_pct", 0),
           ("other work on box %", "others_cpu_pct", 0),
           (f"p50 ms @{cr}", "p50_ms", 3), (f"p99 ms @{cr}", "p99_ms", 3),
           (f"lost @{cr}", "lat_lost", 0),
           (f"server CPU us/q @{cr}", "lat_cpu_us_per_query", 2),
           (f"other work % @{cr}", "lat_others_cpu_pct", 0),
           ("RSS MiB", "rss_mib", 1)])
    print("targets:" + disturbed(noisy, a1, a2, c1, c2))
    checks: list[tuple[str, bool | None]] = []
    for name, w1, w2 in (("authoritative", a1, a2), ("cache hits", c1, c2)):
        ratio = w2["qps"] / w1["qps"]
        dnsperf_cores, others = w2["dnsperf_cpu_pct"] / 100, w2["others_cpu_pct"] / 100
        # Cores per 1,000 qps that dnsperf and skyserve each needed in the 2-worker run; the
        # most this machine could answer with dnsperf on it is what fits in the cores left
        # over by other work. If that is below 1.4x one worker, the target cannot be met
        # here whatever skyserve does: the load generator is the limit.
        us_per_q = (dnsperf_cores + w2["cores"]) / w2["qps"] * 1e6
        ceiling = (NCPU - others) / us_per_q * 1e6
        need = 1.4 * w1["qps"]
        limited = ceiling < need
        w2["load_generator_limit"], w2["qps_ceiling"] = limited, ceiling
        model = 2 * w1["cpu_us_per_query"] / w2["cpu_us_per_query"]
        print(f"  {name}: w2/w1 QPS {ratio:.2f}. With 2 workers, dnsperf used "
              f"{dnsperf_cores:.2f} cores and skyserve {w2['cores']:.2f} ("
              f"{w2['split']} % per process), other work {others:.2f}, box "
              f"{w2['box_busy_pct']:.0f}% busy; at that CPU per query for dnsperf plus "
              f"skyserve ({us_per_q:.1f} us) {NCPU} cores answer at most "
              f"{ceiling:,.0f} qps, and 1.4x one worker is {need:,.0f} qps. "
              f"Load generator the limit: {'YES' if limited else 'no'}. "
              f"skyserve CPU/query w2/w1 {w2['cpu_us_per_query'] / w1['cpu_us_per_query']:.2f}"
              f"; with a free core per worker, 2 x {w1['cpu_us_per_query']:.2f}/"
              f"{w2['cpu_us_per_query']:.2f} us = {model:.2f}x (a model, not a measurement)")
        text = f"--workers 2 >= 1.4x one worker, {name} ({ratio:.2f}x)"
        noise = max(w1["others_cpu_pct"], w2["others_cpu_pct"])
        if limited:
            text += (f": not measurable on {NCPU} cores, dnsperf itself took "
                     f"{dnsperf_cores:.2f} of them (ceiling {ceiling:,.0f} < {need:,.0f} qps)")
        elif noise > noisy:
            text += (f": not comparable, other work on the box took {noise:.0f}% of a core "
                     "in one of the two runs")
        checks.append((text, None if limited or noise > noisy else ratio >= 1.4))
    verdict(checks)
    print_logs(res["logs"])
