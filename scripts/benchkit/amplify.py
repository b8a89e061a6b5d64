"""Amplification and response rate limiting, skyserve beside knot: ``scripts/bench-amplification``.

One zone (``amp.test.``), as SkyDNS records in etcd and as a zone file: ANY on a name with
A, AAAA, TXT and MX records, a large TXT RRset, DNSKEY (no DNSSEC in either: NODATA).
Started side by side on loopback: skyserve without RRL, with ``--rrl-rate R --rrl-slip S``
(also with ``--rrl-window 4``, the burst knot allows) and with ``--minimal-any``; knot
without RRL and with mod-rrl (rate-limit R, slip S).
Each is flooded in turn from many addresses of one /24 (127.66.N.x, a fresh /24 per run so
no run inherits another's buckets) at a fixed rate, round robin over the three kinds, while
a legitimate client in another /24 (127.77.N.1) asks the same at a low rate. Reported per
server and kind: reply and query sizes, amplification (reply bytes / query bytes over all
queries sent), the share answered fully / truncated / not at all, full answers per second;
and the legitimate client's share answered. Each configuration runs --rounds times
(alternating); the table shows medians. Stdlib only, any python3; every process it starts
is stopped by PID.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchkit import ampzone
from benchkit.ampzone import KINDS
from benchkit.flood import Client, bound_sockets, flood, probe
from benchkit.procs import Procs, Server, wait_until
from benchkit.servers import start_etcd, start_knot, start_skyserve, stop_noting_logs
from benchkit.session import on_sigterm, run_session


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=500, help="flood queries per second")
    ap.add_argument("--seconds", type=float, default=3.0, help="flood length per run")
    ap.add_argument("--warm", type=float, default=1.0,
                    help="full answers/s are also counted for queries sent after this many "
                    "seconds, when the rate limiters' initial credit is spent")
    ap.add_argument("--grace", type=float, default=0.5, help="wait for late replies")
    ap.add_argument("--sources", type=int, default=200,
                    help="flooding addresses, 127.66.N.1 up to .254")
    ap.add_argument("--legit-rate", type=float, default=10, help="the other /24's queries/s")
    ap.add_argument("--rounds", type=int, default=2, help="runs per configuration (median)")
    ap.add_argument("--rrl-rate", type=int, default=10)
    ap.add_argument("--rrl-slip", type=int, default=2)
    ap.add_argument("--udp-size", type=int, default=1232,
                    help="both servers' largest UDP reply (both default to 1232)")
    ap.add_argument("--txt-strings", type=int, default=5,
                    help="records in the large TXT RRset (5 x 200 B fits 1232 B)")
    ap.add_argument("--txt-len", type=int, default=200, help="bytes per TXT string (<= 255)")
    ap.add_argument("--python", default=sys.executable, help="interpreter for skyserve")
    ap.add_argument("--json", type=Path, help="write all results here")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (logs)")
    args = ap.parse_args()
    if not 1 <= args.sources <= 254 or not 1 <= args.txt_len <= 255:
        ap.error("--sources must be 1..254 and --txt-len 1..255")
    if not 0 <= args.warm < args.seconds:
        ap.error("--warm must be less than --seconds")
    if args.rate * args.seconds > 60000:
        ap.error("--rate x --seconds must stay under 60,000 queries (16-bit query IDs)")
    return args


def start_all(args: argparse.Namespace, procs: Procs, work: Path) -> dict[str, Server]:
    etcd = start_etcd(procs, work)
    ampzone.load(etcd, args.txt_strings, args.txt_len)
    zone = ampzone.write_zone(work, args.txt_strings, args.txt_len)
    rrl = ("--rrl-rate", str(args.rrl_rate), "--rrl-slip", str(args.rrl_slip))
    size = ("--max-udp-size", str(args.udp_size))
    mod = (f"mod-rrl:\n  - id: flood\n    rate-limit: {args.rrl_rate}\n"
           f"    slip: {args.rrl_slip}\ntemplate:\n  - id: default\n"
           "    global-module: mod-rrl/flood\n")
    servers = {}
    rrl_label = f"RRL {args.rrl_rate}/{args.rrl_slip}"
    # knot's buckets hold 4 s of credit (RRL_CAPACITY in its rrl.c), skyserve's --rrl-window
    # (1 s by default): the same window shows the same first second
    for label, extra in (("skyserve", ()), (f"skyserve {rrl_label}", rrl),
                         (f"skyserve {rrl_label} w4", (*rrl, "--rrl-window", "4")),
                         ("skyserve minimal-any", ("--minimal-any", "true"))):
        servers[label] = start_skyserve(procs, work, args.python, etcd, label.replace(" ", "-")
                                        .replace("/", "-"), ampzone.ZONE, extra=size + extra)
    for label, modules in (("knot", ""), (f"knot mod-rrl {args.rrl_rate}/{args.rrl_slip}", mod)):
        servers[label] = start_knot(procs, work, zone, ampzone.ZONE,
                                    label.split()[0] + ("-rrl" if modules else ""),
                                    modules=modules, udp_payload=args.udp_size)
    return servers


def check(name: str, srv: Server) -> dict[str, Any]:
    """One query of each kind: the server answers and the zone is what we loaded."""
    def answers() -> bool:
        try:
            return probe(srv.port, KINDS[0], 0.3)[1] > 0
        except OSError:
            return False
    wait_until(answers, 60, f"{name} answering ANY", srv)
    out = {}
    for kind in KINDS:
        rcode, an, tc, size = probe(srv.port, kind)
        out[kind.label] = {"rcode": rcode, "answers": an, "tc": tc, "bytes": size}
        if rcode != 0 or (an == 0) != (kind.label == "DNSKEY"):
            raise RuntimeError(f"{name}: {kind.label} {kind.name} -> rcode {rcode}, {an} answers")
    print(f"   {name}: " + ", ".join(f"{k} {v['answers']} RRs {v['bytes']} B"
                                     + (" TC" if v["tc"] else "") for k, v in out.items()))
    return out


def run_once(args: argparse.Namespace, srv: Server, n: int) -> dict[str, Any]:
    attack = Client(bound_sockets([f"127.66.{n}.{i}" for i in range(1, args.sources + 1)]),
                    KINDS, args.rate)
    legit = Client(bound_sockets([f"127.77.{n}.1"]), KINDS, args.legit_rate)
    return flood(srv.port, attack, legit, args.seconds, args.warm, args.grace)


def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {side: {kind: {m: statistics.median(r[side][kind][m] for r in runs)
                          for m in runs[0][side][kind]} for kind in runs[0][side]}
            for side in runs[0]}


def run(args: argparse.Namespace, procs: Procs, work: Path) -> dict[str, Any]:
    ver = subprocess.run([args.python, "-c", "import sys; print(sys.version)"],
                         capture_output=True, text=True, timeout=30, check=True)
    res: dict[str, Any] = {"python": args.python, "python_version": ver.stdout.strip(),
                           "args": {k: str(v) for k, v in vars(args).items()}, "configs": {},
                           "logs": {}}
    servers = start_all(args, procs, work)
    for name, srv in servers.items():
        res["configs"][name] = {"probe": check(name, srv), "runs": []}
    n = 0
    for r in range(args.rounds):
        for name, srv in servers.items():
            print(f"== round {r + 1}/{args.rounds}: {name}, flood from 127.66.{n}.0/24", flush=True)
            res["configs"][name]["runs"].append(run_once(args, srv, n))
            n += 1
    for name, srv in servers.items():
        res["configs"][name]["median"] = medians(res["configs"][name]["runs"])
        stop_noting_logs(procs, srv, res["logs"])
    return res


def report(res: dict[str, Any], args: argparse.Namespace) -> None:
    print(f"\nflood: {args.rate:g} q/s from {args.sources} addresses of one /24 for "
          f"{args.seconds:g} s, round robin over {', '.join(k.label for k in KINDS)}; "
          f"EDNS 4096 advertised, servers' UDP limit {args.udp_size} B; "
          f"medians of {args.rounds} runs; steady: full answers/s to queries sent after "
          f"the first {args.warm:g} s; beyond: reply bytes / query bytes over the queries "
          "not answered fully")
    print(f"\n{'server':<24}{'kind':<8}{'query B':>8}{'reply B':>8}{'amplif.':>9}"
          f"{'full %':>8}{'TC %':>7}{'none %':>8}{'full/s':>8}{'steady':>8}{'beyond':>8}")
    print("-" * 104)
    for name, c in res["configs"].items():
        for kind, m in c["median"]["attack"].items():
            print(f"{name:<24}{kind:<8}{m['query_bytes']:>8.0f}{c['probe'][kind]['bytes']:>8}"
                  f"{m['amplification']:>9.2f}{m['full_pct']:>8.1f}{m['tc_pct']:>7.1f}"
                  f"{m['none_pct']:>8.1f}{m['full_per_s']:>8.1f}"
                  f"{m['steady_full_per_s']:>8.1f}{m['beyond_amplification']:>8.2f}")
    print(f"\nlegitimate client, another /24, {args.legit_rate:g} q/s over the same kinds "
          "(answered fully %, all kinds):")
    for name, c in res["configs"].items():
        legit = c["median"]["legit"]
        sent = sum(m["sent"] for m in legit.values())
        full = sum(m["full_pct"] * m["sent"] for m in legit.values()) / max(1, sent)
        print(f"  {name:<24}{full:6.1f}%  of {sent:.0f}")
    odd = {k: v for k, v in res["logs"].items() if v["odd_lines"]}
    for k, v in odd.items():
        print(f"!! {k}: {v['odd_lines']} error/warning lines in its log, e.g. {v['first'][0]!r}")


def main() -> int:
    args = parse_args()
    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)

    def body(procs: Procs, work: Path) -> None:
        res = run(args, procs, work)
        print(f"\nskyserve: {res['python']} ({res['python_version'].split()[0]})")
        report(res, args)
        if args.json:
            args.json.write_text(json.dumps(res, indent=2) + "\n")

    return run_session("bench-amplification", args.keep, body)
