"""scripts/bench-dns --suite shapes' pure parts: the flood's query file, alternating rounds and
their medians, the report and the charts from a saved result; nothing is started or timed."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, cast

import pytest

from benchkit.dataset import write_flood_queries
from benchkit.procs import Server, context_switches
from benchkit.rounds import alternate, median_of, paired_ratio
from benchkit.shapes_report import report_shapes

ROOT = Path(__file__).resolve().parents[1]


def test_flood_names_are_distinct_new_names_of_the_zone_and_follow_the_seed(
        tmp_path: Path) -> None:
    path = write_flood_queries(tmp_path / "q.txt", 50_000, random.Random(7))
    lines = path.read_text().splitlines()
    assert len(lines) == len(set(lines)) == 50_000
    labels = [ln.removesuffix(".bench.test A") for ln in lines]
    assert all(len(label) == 12 and "." not in label for label in labels)
    assert not any(label.startswith("h") for label in labels)  # never a record's name
    again = write_flood_queries(tmp_path / "r.txt", 50_000, random.Random(7)).read_text()
    assert again == path.read_text()


def test_context_switches_count_each_sleep_of_every_live_thread() -> None:
    """The fixed-rate rows' switches: a thread that sleeps 20 times switches out 20 times
    or more (voluntarily), counted while it lives (as a server's threads do)."""
    before = context_switches(os.getpid())
    napped, done = threading.Event(), threading.Event()

    def naps() -> None:
        for _ in range(20):
            time.sleep(0.001)
        napped.set()
        done.wait(5)

    thread = threading.Thread(target=naps)
    thread.start()
    assert napped.wait(5)
    voluntary, involuntary = context_switches(os.getpid())
    done.set()
    thread.join()
    assert voluntary - before[0] >= 20
    assert involuntary >= before[1]


def test_medians_and_paired_ratios() -> None:
    runs = [{"qps": 10.0, "lost": 0, "rcodes": "x"}, {"qps": 30.0}, {"qps": 20.0, "lost": 2}]
    assert median_of(runs) == {"qps": 20.0, "lost": 1.0}
    knot = [{"qps": 20.0}, {"qps": 30.0}, {"qps": float("nan")}]
    assert paired_ratio(runs, knot, "qps") == pytest.approx((0.5 + 1.0) / 2)
    assert paired_ratio(runs, knot, "missing") is None


def test_rounds_alternate_which_server_goes_first() -> None:
    calls: list[tuple[str, int]] = []
    servers = {"skyserve": cast(Server, "sky"), "knot": cast(Server, "knot")}

    def measure(srv: Server, r: int) -> dict[str, Any]:
        calls.append((str(srv), r))
        return {"qps": 100.0 * (r + 1) if str(srv) == "sky" else 200.0}

    out = alternate(servers, 3, measure)
    assert calls == [("sky", 0), ("knot", 0), ("knot", 1), ("sky", 1), ("sky", 2), ("knot", 2)]
    assert out["skyserve"]["median"]["qps"] == 200.0
    assert [x["qps"] for x in out["knot"]["rounds"]] == [200.0] * 3


def tiny_result() -> dict[str, Any]:
    """A saved --json of the shapes suite, one round of each shape, made-up figures."""
    def block(sky: dict[str, Any], knot: dict[str, Any]) -> dict[str, Any]:
        return {role: {"rounds": [x], "median": median_of([x])}
                for role, x in (("skyserve", sky), ("knot", knot))}

    tput = {"qps": 50000.0, "cpu_us_per_query": 12.0, "lost": 0.0, "others_cpu_pct": 3.0}
    ktput = {**tput, "qps": 100000.0, "cpu_us_per_query": 6.0}
    lat = {"p50_ms": 0.05, "p90_ms": 0.1, "p99_ms": 0.5, "lat_lost": 0.0,
           "lat_cpu_us_per_query": 20.0, "lat_others_cpu_pct": 1.0}
    klat = {**lat, "p99_ms": 0.2, "lat_cpu_us_per_query": 15.0}
    flood = {**tput, "rcodes": "NXDOMAIN 500000 (100.00%)", "names_repeated": False}
    zone = {role: {"ready_s": 1.0, "rss_kb_loaded": 50000, "rss_kb_after": 60000}
            for role in ("skyserve", "knot")}
    return {"python": "/usr/bin/python3", "python_version": "3.11.2 (main)",
            "code_at_start": "abc", "shapes": {
                "rounds": 1, "records": 10000, "clients": 8, "rate": 20000, "duration": 2.0,
                "sky_args": "", "logs": {},
                "zones": {"10000": zone, "100000": zone},
                "repeated": {"100": block(tput, ktput), "200": block(tput, ktput)},
                "rates": {"5000": block(lat, klat), "20000": block(lat, klat)},
                "flood": block(flood, {**flood, "qps": 60000.0}),
                "zonewide": {"100000": block({**tput, **lat}, {**ktput, **klat})}}}


def test_report_judges_the_targets_on_the_ratios(capsys: pytest.CaptureFixture[str]) -> None:
    report_shapes(tiny_result()["shapes"], "/usr/bin/python3, 3.11.2")
    out = capsys.readouterr().out
    assert "[FAIL] repeated 10,000, -q 100: QPS (max) ratio >= 0.9 (0.50)" in out
    assert "[PASS] flood (new names), 10,000: QPS (max, -q 100) ratio >= 0.7 (0.83)" in out
    assert "[PASS] zone-wide 100,000: p99 ms @20,000 skyserve < 1 (0.500)" in out
    assert "[PASS] check: flood answers all NXDOMAIN" in out


def test_report_names_the_targets_the_floor_itself_misses(
        capsys: pytest.CaptureFixture[str]) -> None:
    res = tiny_result()["shapes"]
    floor = {"qps": 80000.0, "cpu_us_per_query": 5.0, "lost": 0.0, "others_cpu_pct": 1.0}
    for block in res["repeated"].values():
        block["floor"] = {"rounds": [floor], "median": median_of([floor])}
    report_shapes(res, "/usr/bin/python3, 3.11.2")
    out = capsys.readouterr().out
    beyond = out.split("out of reach of a one-process CPython server")[1]
    # knot: 100,000 qps at 6 us; the floor: 0.80 of its QPS (target 0.9), 0.83 of its CPU
    assert "repeated 10,000, -q 100: QPS (max) ratio >= 0.9 (the floor: 0.80)" in beyond
    assert "CPU us/query" not in beyond  # the floor meets <= 1.3
    assert "-q 200" not in beyond  # no target there
    assert "[FAIL] repeated 10,000, -q 100: QPS (max) ratio >= 0.9 (0.50)" in out  # still judged


def test_charts_from_a_saved_result_are_pngs(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from benchkit.charts import draw

    saved = tmp_path / "results.json"
    saved.write_text(json.dumps(tiny_result()))
    res = json.loads(saved.read_text())
    floor = {"qps": 80000.0, "cpu_us_per_query": 5.0}
    res["shapes"]["repeated"]["100"]["floor"] = {"rounds": [floor], "median": floor}
    paths = draw(res, tmp_path / "charts")
    assert sorted(p.name for p in paths) == ["latency-vs-load.png", "ratios.png",
                                             "zone-size.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_shapes_run_separately_merge_into_one_result(tmp_path: Path) -> None:
    from benchkit.dns import merge_saved

    full = tiny_result()
    first, second = json.loads(json.dumps(full)), json.loads(json.dumps(full))
    del first["shapes"]["zonewide"], first["shapes"]["zones"]["100000"]
    for key in ("repeated", "rates", "flood"):
        del second["shapes"][key]
    paths = [tmp_path / "a.json", tmp_path / "b.json"]
    for path, res in zip(paths, (first, second), strict=True):
        path.write_text(json.dumps(res))
    assert merge_saved(paths) == full


@pytest.mark.e2e  # runs the script (it starts no server with --charts-from)
def test_bench_dns_reprints_and_redraws_a_saved_result(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    saved = tmp_path / "results.json"
    saved.write_text(json.dumps(tiny_result()))
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench-dns"), "--charts-from",
                          str(saved), "--charts", str(tmp_path / "charts")],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert "skyserve interpreter: /usr/bin/python3, 3.11.2" in out
    assert "[FAIL] repeated 10,000, -q 100: QPS (max) ratio >= 0.9 (0.50)" in out
    assert len(list((tmp_path / "charts").glob("*.png"))) == 3
