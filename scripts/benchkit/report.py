"""Plain-text tables and PASS/FAIL lines shared by the suites' reports."""

from __future__ import annotations

import math
from typing import Any


def percentile(sorted_vals: list[float], p: float) -> float:
    if not sorted_vals:
        return math.nan
    idx = max(0, math.ceil(p / 100 * len(sorted_vals)) - 1)
    return sorted_vals[min(idx, len(sorted_vals) - 1)]

def fmt(v: Any, nd: int = 1) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    return f"{v:,.{nd}f}" if isinstance(v, float) else str(v)

def print_logs(logs: dict[str, Any]) -> None:
    odd = {k: v for k, v in logs.items() if v["odd_lines"]}
    print("\nserver logs: " + ("no error/warning lines" if not odd else ""))
    for name, v in odd.items():
        print(f"  {name}: {v['odd_lines']} error/warning lines, e.g.")
        for ln in v["first"][:5]:
            print(f"    {ln}")

Row = tuple[str, str, int]

def table(title: str, cols: list[tuple[str, dict[str, Any], bool]], rows: list[Row]) -> None:
    """Columns of result dicts; a column flagged True is a ratio (always 2 decimals)."""
    print(f"\n{title}\n{'metric':<24}" + "".join(f"{c[0]:>14}" for c in cols))
    print("-" * (24 + 14 * len(cols)))
    for label, key, nd in rows:
        cells = [fmt(d.get(key), 2 if is_ratio else nd) for _, d, is_ratio in cols]
        print(f"{label:<24}" + "".join(f"{c:>14}" for c in cells))

def disturbed(limit: float, *runs: dict[str, Any]) -> str:
    """A note when other work on the machine took more than ``limit`` % of a core in a run."""
    worst = max(max(r.get("others_cpu_pct", 0), r.get("lat_others_cpu_pct", 0)) for r in runs)
    if worst <= limit:
        return ""
    return (f" -- DISTURBED: other work on the box took up to {worst:.0f}% of a core during "
            "these runs")

def verdict(checks: list[tuple[str, bool | None]]) -> None:
    for text, ok in checks:
        tag = "N/A " if ok is None else ("PASS" if ok else "FAIL")
        print(f"  [{tag}] {text}")
