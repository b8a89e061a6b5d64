"""The churn suite: skyserve serving a fixed query rate while etcd changes under it.

etcd holds --records names (the auth suite's h0..hN-1). One skyserve is measured three times
with the same dnsperf runs (max throughput, then --rate qps with per-query times):

* quiet: nothing changes in etcd;
* churn: a writer process puts a new address for a random name --churn-rate times a
  second (transactions of --churn-batch puts over one keep-alive connection to etcd's
  JSON gateway, paced by a schedule so a late put is caught up, not dropped), and a
  prober in this process changes one more name every 1/--probe-rate s and polls
  skyserve every 0.5 ms until it answers the new address: put -> answer propagation,
  judged during the fixed-rate run (each run has its own churn: at max throughput the
  box has no core left for etcd, whose own put latency then dominates).

The writer and the prober touch disjoint halves of the zone. "other work %" of the churn
runs includes etcd, the writer and the prober: the churn's own cost, reported apart. A
third run ("elsewhere") has the writer put the same load under a prefix skyserve does not
watch: what the box's load alone (etcd, writer, prober) does to the figures, so the rest
of the difference between quiet and churn is skyserve's own.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import itertools
import json
import multiprocessing
import random
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from benchkit.auth import change_and_wait, delay_stats
from benchkit.dataset import key_for, new_ip, record
from benchkit.dnsperf import bench_server, latency_run, max_run
from benchkit.net import udp_socket
from benchkit.procs import CLK_TCK, Procs, Server, cpu_ticks
from benchkit.report import fmt
from benchkit.servers import check_answers, start_skyserve, stop_noting_logs

PROBE_BASE = 1 << 19  # the prober's new_ip() numbers: never the writer's
ELSEWHERE = "/bench-churn-elsewhere"  # a prefix skyserve does not watch


def _writer(port: int, prefix: str, count: int, rate: float, batch: int, stop: Any,
            done: Any) -> None:
    """Put new addresses for random names ``prefix``/h0..h{count-1} at ``rate`` per second,
    ``batch`` puts per transaction (each put is its own change of its own name)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    rng = random.Random(3)
    start, k = time.monotonic(), 0
    while not stop.is_set():
        ahead = start + k / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
        ops = [{"requestPut": {
            "key": base64.b64encode(f"{prefix}/h{rng.randrange(count)}".encode()).decode(),
            "value": base64.b64encode(record(new_ip((k + j) % PROBE_BASE)).encode()).decode()}}
            for j in range(batch)]
        conn.request("POST", "/v3/kv/txn", json.dumps({"success": ops}))
        conn.getresponse().read()
        k += batch
        done.value = k


_PROBES = itertools.count()  # the prober's new_ip() numbers, across runs: always new


class Churn:
    """The writer process and the prober thread, for the duration of a ``with`` block."""

    def __init__(self, sky: Server, etcd: Server, etcd_port: int, args: argparse.Namespace,
                 prefix: str) -> None:
        self.sky, self.etcd, self.etcd_port, self.args = sky, etcd, etcd_port, args
        ctx = multiprocessing.get_context("fork")
        self._stop, self._done = ctx.Event(), ctx.Value("q", 0)
        half = args.records // 2
        self._proc = ctx.Process(target=_writer, daemon=True, args=(
            etcd_port, prefix, half, float(args.churn_rate), args.churn_batch, self._stop,
            self._done))
        self._probing = threading.Event()
        self._prober = threading.Thread(target=self._probe, daemon=True)
        self.delays: list[float] = []
        self.put_ms: list[float] = []
        self.timeouts = 0
        self.stats: dict[str, Any] = {}

    def __enter__(self) -> Churn:
        self._t0, self._etcd0 = time.monotonic(), cpu_ticks(self.etcd.pid)
        self._proc.start()
        self._prober.start()
        return self

    def _probe(self) -> None:
        sock = udp_socket(self.sky.port)
        rng, half, n = random.Random(), self.args.records // 2, self.args.records
        try:
            while not self._probing.wait(1 / self.args.probe_rate):
                ip = new_ip(PROBE_BASE + next(_PROBES))
                delay, put = change_and_wait(sock, self.etcd_port, rng.randrange(half, n), ip,
                                             self.args.change_timeout, gap=0.0005)
                self.put_ms.append(put)
                if delay is None:
                    self.timeouts += 1
                else:
                    self.delays.append(delay)
        finally:
            sock.close()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        wall = time.monotonic() - self._t0
        writer_cpu = cpu_ticks(self._proc.pid or 0) / CLK_TCK
        etcd_cpu = (cpu_ticks(self.etcd.pid) - self._etcd0) / CLK_TCK
        self._stop.set()
        self._probing.set()
        self._proc.join(10)
        self._prober.join(10)
        if self._proc.is_alive():
            self._proc.kill()
        self.stats = {**delay_stats(self.delays, self.put_ms, self.timeouts),
                      "writer_puts": self._done.value,
                      "writer_puts_per_s": self._done.value / wall,
                      "writer_cpu_pct": 100 * writer_cpu / wall,
                      "etcd_cpu_pct": 100 * etcd_cpu / wall}
        c = self.stats
        print(f"   churn: {c['writer_puts_per_s']:.0f} puts/s (writer CPU "
              f"{c['writer_cpu_pct']:.0f}%, etcd {c['etcd_cpu_pct']:.0f}%); propagation over "
              f"{c['changes']} probes p50 {fmt(c['p50_ms'], 2)} ms p99 {fmt(c['p99_ms'], 2)} "
              f"ms max {fmt(c['max_ms'], 2)} ms (etcd put p99 {fmt(c['put_p99_ms'], 2)} ms), "
              f"timeouts {c['timeouts']}", flush=True)


def churn_run(sky: Server, etcd: Server, etcd_port: int, qfile: Path,
              args: argparse.Namespace, label: str, prefix: str) -> dict[str, Any]:
    """The max-throughput and the fixed-rate runs, each under its own churn (propagation is
    judged at the fixed rate: at max throughput the box has no core left for etcd); the box
    is busy on purpose, so no waiting for quiet."""
    calm = argparse.Namespace(**{**vars(args), "quiet_wait": 0.0, "noisy_retries": 0})
    with Churn(sky, etcd, etcd_port, args, prefix) as at_max:
        res = max_run(sky, qfile, calm, None, label)
    with Churn(sky, etcd, etcd_port, args, prefix) as at_rate:
        res.update(latency_run(sky.pid, sky.port, qfile, calm, args.rate, label))
    res["churn_max"], res["churn"] = at_max.stats, at_rate.stats
    return res


def run_churn(args: argparse.Namespace, procs: Procs, work: Path, etcd_port: int,
              qfile: Path) -> dict[str, Any]:
    etcd = next(s for s in procs.servers if s.name == "etcd")
    sky = start_skyserve(procs, work, args.python, etcd_port)
    check_answers(sky, args.records)
    zone = key_for(0).rsplit("/", 1)[0]
    res = {"quiet": bench_server(sky, qfile, args, label="skyserve quiet"),
           "churn": churn_run(sky, etcd, etcd_port, qfile, args, "skyserve churn", zone),
           "elsewhere": churn_run(sky, etcd, etcd_port, qfile, args,
                                  "skyserve, churn outside its zone", ELSEWHERE)}
    stop_noting_logs(procs, sky, res.setdefault("logs", {}))
    return res


ROWS = [("QPS (max)", "qps", 0), ("CPU us/query (max)", "cpu_us_per_query", 2),
        ("other work % (max)", "others_cpu_pct", 0), ("QPS @rate", "lat_qps", 0),
        ("CPU us/query @rate", "lat_cpu_us_per_query", 2), ("p50 ms @rate", "p50_ms", 3),
        ("p99 ms @rate", "p99_ms", 3), ("lost @rate", "lat_lost", 0),
        ("other work % @rate", "lat_others_cpu_pct", 0)]


def report_churn(res: dict[str, Any], rate: int) -> None:
    runs = [(name, res[name]) for name in ("quiet", "churn", "elsewhere") if name in res]
    print(f"\n{'churn suite':<22}" + "".join(f"{n:>12}" for n, _ in runs)
          + f"{'churn/quiet':>13}")
    print("-" * (35 + 12 * len(runs)))
    q, c = res["quiet"], res["churn"]
    for label, key, nd in ROWS:
        qv, cv = q.get(key), c.get(key)
        ratio = fmt(cv / qv, 2) if isinstance(cv, float) and isinstance(qv, float) and qv else "-"
        print(f"{label.replace('rate', str(rate)):<22}"
              + "".join(f"{fmt(r.get(key), nd):>12}" for _, r in runs) + f"{ratio:>13}")
    for name, r in runs[1:]:
        for when, ch in ((f"@{rate}", r["churn"]), ("@max", r["churn_max"])):
            print(f"{name} {when}: {ch['writer_puts_per_s']:.0f} puts/s, etcd CPU "
                  f"{ch['etcd_cpu_pct']:.0f}%, writer CPU {ch['writer_cpu_pct']:.0f}%; "
                  f"propagation p50 {fmt(ch['p50_ms'], 2)} p99 {fmt(ch['p99_ms'], 2)} max "
                  f"{fmt(ch['max_ms'], 2)} ms over {ch['changes']} probes (etcd put p99 "
                  f"{fmt(ch['put_p99_ms'], 2)} ms), timeouts {ch['timeouts']}")
    print("(other work of the churn runs includes etcd, the writer and the prober)")
    ch = c["churn"]
    checks = [(f"propagation p99 <= 20 ms at {rate} qps, no timeouts",
               ch["timeouts"] == 0 and ch["p99_ms"] <= 20),
              ("QPS @rate within 10% of quiet", c["lat_qps"] >= 0.9 * q["lat_qps"]),
              ("max QPS within 10% of quiet", c["qps"] >= 0.9 * q["qps"]),
              ("p99 @rate within 10% of quiet", c["p99_ms"] <= 1.1 * q["p99_ms"])]
    print("\ntargets:")
    for text, ok in checks:
        print(f"  [{'PASS' if ok else 'FAIL'}] {text}")
