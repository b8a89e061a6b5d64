"""Alternating rounds of two servers under the same load, and the medians that summarise them.

On 2 shared cores a run's figures swing by ±15% with the scheduler and other work; running
the servers one after the other, swapping which goes first every round, and comparing medians
(and the median of each round's ratio) keeps a drift from favouring one of them."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from typing import Any

from benchkit.procs import Server

Measure = Callable[[Server, int], dict[str, Any]]  # (server, round number) -> figures

def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and not math.isnan(v)

def median_of(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Per numeric key, the median of the runs that have it."""
    keys = sorted({k for run in runs for k, v in run.items() if _number(v)})
    return {k: statistics.median(run[k] for run in runs if _number(run.get(k))) for k in keys}

def paired_ratio(a: list[dict[str, Any]], b: list[dict[str, Any]], key: str) -> float | None:
    """The median over rounds of a[round][key] / b[round][key] (None if no round has both)."""
    ratios = [x[key] / y[key] for x, y in zip(a, b, strict=True)
              if _number(x.get(key)) and _number(y.get(key)) and y[key]]
    return statistics.median(ratios) if ratios else None

def alternate(servers: dict[str, Server], rounds: int, measure: Measure) -> dict[str, Any]:
    """``measure`` each server once per round, first in turn; per server (by role) its
    rounds and their medians."""
    out: dict[str, Any] = {role: {"rounds": []} for role in servers}
    order = list(servers.items())
    for r in range(rounds):
        for role, srv in order if r % 2 == 0 else order[::-1]:
            out[role]["rounds"].append(measure(srv, r))
    for role in servers:
        out[role]["median"] = median_of(out[role]["rounds"])
    return out
