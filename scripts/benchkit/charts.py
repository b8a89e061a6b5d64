"""PNG charts of a shapes-suite result (a run's, or one saved with --json): QPS and CPU per
query against zone size, latency percentiles and CPU per query against offered load, and the
skyserve/knot ratios per shape against the targets; skyserve and knot on the same axes, and
the floor (a bare CPython receive/send loop, benchkit/floor.py) where it ran.

matplotlib is imported only here, when charts are asked for (the ``bench`` extra), so the
benchmark itself still runs on any python3."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchkit.rounds import paired_ratio

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

STYLE = {"skyserve": ("tab:blue", "o"), "knot": ("tab:orange", "s"),  # (colour, marker)
         "floor": ("tab:gray", "^")}

Series = dict[str, list[tuple[float, float, float, float]]]  # role -> (x, median, lo, hi)

def _spread(block: dict[str, Any], role: str, key: str) -> tuple[float, float, float] | None:
    if role not in block:
        return None
    vals = [x[key] for x in block[role]["rounds"] if isinstance(x.get(key), float | int)]
    med = block[role]["median"].get(key)
    return None if med is None or not vals else (med, min(vals), max(vals))

def series(blocks: dict[float, dict[str, Any]], key: str) -> Series:
    """Per server, (x, median, min, max over rounds) of ``key`` for each x's block."""
    out: Series = {}
    for role in STYLE:
        pts = [(x, *s) for x, b in sorted(blocks.items()) if (s := _spread(b, role, key))]
        out[role] = pts
    return out

def zone_blocks(sh: dict[str, Any]) -> dict[float, dict[str, Any]]:
    """Max-throughput rounds by zone size: the repeated shape at dnsperf's default -q is the
    zone-wide mix of the --records zone (every name in turn), then the zonewide shape."""
    out: dict[float, dict[str, Any]] = {}
    if "100" in sh.get("repeated", {}):
        out[float(sh["records"])] = sh["repeated"]["100"]
    out.update({float(n): b for n, b in sh.get("zonewide", {}).items()})
    return out

def _plot(ax: Axes, data: Series, label: str = "", linestyle: str = "-") -> None:
    for role, pts in data.items():
        if pts:
            xs, med, lo, hi = zip(*pts, strict=True)
            err = [[m - a for m, a in zip(med, lo, strict=True)],
                   [b - m for m, b in zip(med, hi, strict=True)]]
            color, marker = STYLE[role]
            ax.errorbar(xs, med, yerr=err, capsize=3, linestyle=linestyle, color=color,
                        marker=marker, label=f"{role}{label}")

def _subtitle(res: dict[str, Any]) -> str:
    sh = res["shapes"]
    return (f"skyserve on {res.get('python', '?')} ({res.get('python_version', '?').split()[0]}),"
            f" knot 1 UDP worker; medians of {sh['rounds']} alternating rounds, whiskers min-max;"
            f" dnsperf -c {sh['clients']}")

def draw(res: dict[str, Any], outdir: Path) -> list[Path]:
    """Write the charts the result has data for; returns their paths."""
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global figures
    from matplotlib.ticker import StrMethodFormatter

    sh, written = res["shapes"], []
    outdir.mkdir(parents=True, exist_ok=True)
    zones = zone_blocks(sh)
    if zones:
        fig = Figure(figsize=(11, 4.5))
        a1, a2 = fig.subplots(1, 2)
        _plot(a1, series(zones, "qps"))
        _plot(a2, series(zones, "cpu_us_per_query"))
        a1.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
        for ax, ylabel in ((a1, "max QPS (dnsperf -q 100)"), (a2, "server CPU µs per query")):
            ax.set(xscale="log", xlabel="records in the zone (every name asked, shuffled)",
                   ylabel=ylabel, ylim=(0, None))
            ax.grid(alpha=0.3)
            ax.legend()
        written.append(_save(fig, outdir / "zone-size.png", _subtitle(res)))
    if sh.get("rates"):
        rates = {float(r): b for r, b in sh["rates"].items()}
        fig = Figure(figsize=(11, 4.5))
        a1, a2 = fig.subplots(1, 2)
        for p, ls in ((50, ":"), (90, "--"), (99, "-")):
            _plot(a1, series(rates, f"p{p}_ms"), f" p{p}", ls)
        _plot(a2, series(rates, "lat_cpu_us_per_query"))
        a1.set(yscale="log", ylabel="latency ms (dnsperf -v, -q 100)")
        a2.set(ylabel="server CPU µs per query", ylim=(0, None))
        for ax in (a1, a2):
            ax.set(xscale="log", xlabel=f"offered load, queries/s ({sh['records']:,} records)")
            ax.set_xticks(list(rates), [f"{r / 1000:g}k" for r in rates])
            ax.tick_params(axis="x", which="minor", labelbottom=False)
            ax.grid(alpha=0.3)
            ax.legend(fontsize="small")
        written.append(_save(fig, outdir / "latency-vs-load.png", _subtitle(res)))
    bars = ratio_bars(sh)
    if bars:
        fig = Figure(figsize=(11, 4.5))
        ax = fig.subplots()
        labels = [b[0] for b in bars]
        ax.bar(labels, [b[1] or 0 for b in bars], color="tab:blue")
        ax.scatter(labels, [b[2] for b in bars], marker="_", s=900, color="tab:red",
                   zorder=3, label="target")
        floors = [(b[0], b[3]) for b in bars if b[3] is not None]
        if floors:
            ax.scatter(*zip(*floors, strict=True), marker="^", color="tab:gray", zorder=3,
                       label="floor / knot (bare CPython loop)")
        ax.axhline(1.0, color="grey", linewidth=0.8)
        ax.set(ylabel="skyserve / knot (median of rounds)")
        ax.tick_params(axis="x", labelsize="small", rotation=20)
        ax.legend()
        written.append(_save(fig, outdir / "ratios.png", _subtitle(res)))
    return written

Bar = tuple[str, float | None, float, float | None]  # label, ratio, target, the floor's ratio

def ratio_bars(sh: dict[str, Any]) -> list[Bar]:
    """(label, skyserve/knot ratio, target, floor/knot ratio or None) for each shape the
    result has, issue 11's targets: a QPS ratio at least the target, a CPU ratio at most it."""
    out: list[Bar] = []

    def add(label: str, block: dict[str, Any], key: str, target: float) -> None:
        knot = block["knot"]["rounds"]
        floor = paired_ratio(block["floor"]["rounds"], knot, key) if "floor" in block else None
        out.append((label, paired_ratio(block["skyserve"]["rounds"], knot, key), target, floor))

    if "100" in sh.get("repeated", {}):
        add("repeated QPS (>=)", sh["repeated"]["100"], "qps", 0.9)
        add("repeated CPU/q (<=)", sh["repeated"]["100"], "cpu_us_per_query", 1.3)
    if str(sh["rate"]) in sh.get("rates", {}):
        add(f"CPU/q @{sh['rate']:,} qps (<=)", sh["rates"][str(sh["rate"])],
            "lat_cpu_us_per_query", 1.3)
    for n, block in sh.get("zonewide", {}).items():
        add(f"zone-wide {int(n):,} QPS (>=)", block, "qps", 0.7)
    if "flood" in sh:
        add("flood QPS (>=)", sh["flood"], "qps", 0.7)
    return out

def _save(fig: Figure, path: Path, subtitle: str) -> Path:
    fig.suptitle(subtitle, fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path
