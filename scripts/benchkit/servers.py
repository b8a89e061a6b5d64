"""Starting the servers under test on loopback (etcd, skyserve, knot, nsd, dnsmasq, unbound),
checking their answers, reading their logs."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchkit.dataset import TXN_OPS, UP_ZONE, ZONE, ip_for
from benchkit.net import free_port, http_status, query_a, scrape, udp_socket
from benchkit.procs import Procs, Server, wait_until

REPO = Path(__file__).resolve().parents[2]  # the checkout: skyserve runs from there

def start_etcd(procs: Procs, work: Path) -> int:
    port, peer = free_port(), free_port()
    cu, pu = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{peer}"
    cmd = ["etcd", "--name", "bench", "--data-dir", str(work / "etcd"),
           "--listen-client-urls", cu, "--advertise-client-urls", cu,
           "--listen-peer-urls", pu, "--initial-advertise-peer-urls", pu,
           "--initial-cluster", f"bench={pu}", "--log-level", "warn",
           # big zones load in large transactions (dataset.load_records)
           "--max-txn-ops", str(TXN_OPS), "--max-request-bytes", str(32 << 20)]
    srv = procs.start("etcd", cmd, work / "etcd.log")
    wait_until(lambda: http_status(f"{cu}/health") == 200, 30, "etcd /health", srv)
    return port

def start_knot(procs: Procs, work: Path, zone_file: Path, zone: str = ZONE,
               name: str = "knot", stats: bool = False, modules: str = "",
               udp_payload: int = 1232) -> Server:
    """knotd with one UDP worker; with ``stats``, a control socket and mod-stats counters;
    ``modules``: other module sections and the template that loads them (e.g. mod-rrl)."""
    port, d = free_port(), work / name
    (d / "db").mkdir(parents=True)  # knot warns about a missing storage dir otherwise
    extra = modules
    if stats:
        extra = (f"control:\n  listen: {d}/knot.sock\n"
                 "mod-stats:\n  - id: count\n    request-protocol: on\n"
                 "template:\n  - id: default\n    global-module: mod-stats/count\n")
    (d / "knot.conf").write_text(
        f"server:\n  rundir: {d}\n  pidfile: {d}/knot.pid\n  listen: 127.0.0.1@{port}\n"
        "  udp-workers: 1\n  tcp-workers: 1\n  background-workers: 1\n"
        f"  udp-max-payload: {udp_payload}\n"
        f"database:\n  storage: {d}/db\nlog:\n  - target: stderr\n    any: warning\n"
        f"{extra}zone:\n  - domain: {zone}\n    file: {zone_file}\n    journal-content: none\n")
    return procs.start(name, ["knotd", "-c", str(d / "knot.conf")], d / "knot.log", port)

class Upstream:
    """The knot every forwarder of --suite forward talks to, with its query counter."""

    def __init__(self, srv: Server, conf: Path) -> None:
        self.srv, self.conf = srv, conf

    def queries(self) -> int:
        """Queries knot has received so far (mod-stats request-protocol, all protocols)."""
        p = subprocess.run(["knotc", "-c", str(self.conf), "stats", "mod-stats.request-protocol"],
                           capture_output=True, text=True, timeout=30, check=False)
        if p.returncode != 0:
            raise RuntimeError(f"knotc stats failed: {p.stderr.strip() or p.stdout.strip()}")
        return sum(int(m) for m in re.findall(r"=\s*(\d+)", p.stdout))

def start_nsd(procs: Procs, work: Path, zone: Path) -> Server:
    port, d = free_port(), work / "nsd"
    d.mkdir()
    (d / "nsd.conf").write_text(
        f'server:\n  ip-address: 127.0.0.1@{port}\n  server-count: 1\n  username: ""\n'
        f'  chroot: ""\n  database: ""\n  zonesdir: {d}\n  zonelistfile: {d}/zone.list\n'
        f"  pidfile: {d}/nsd.pid\n  xfrdfile: {d}/xfrd.state\n  xfrdir: {d}\n"
        f"  logfile: {d}/nsd.log\n  rrl-ratelimit: 0\n  verbosity: 1\n"
        f"remote-control:\n  control-enable: no\nzone:\n  name: {ZONE}\n  zonefile: {zone}\n")
    return procs.start("nsd", ["nsd", "-d", "-c", str(d / "nsd.conf")], d / "nsd.out", port)

METRICS_PORT: dict[int, int] = {}  # skyserve pid -> its metrics port

def start_skyserve(procs: Procs, work: Path, python: str, etcd_port: int,
                   name: str = "skyserve", zone: str = ZONE, upstream: int = 0,
                   extra: tuple[str, ...] = (), ready_timeout: float = 120) -> Server:
    """skyserve on loopback; never reads /etc/resolv.conf (only ``--upstream`` if given)."""
    port, health, ready, metrics = free_port(), free_port(), free_port(), free_port()
    cmd = [python, "-m", "skyserve", "--etcd-endpoints", f"http://127.0.0.1:{etcd_port}",
           "--zone", zone, "--dns-addr", f"127.0.0.1:{port}",
           "--health-addr", f"127.0.0.1:{health}", "--ready-addr", f"127.0.0.1:{ready}",
           "--metrics-addr", f"127.0.0.1:{metrics}", "--resolv-conf", "", "--lameduck", "0"]
    if upstream:
        cmd += ["--upstream", f"127.0.0.1:{upstream}"]
    cmd += list(extra)
    srv = procs.start(name, cmd, work / f"{name}.log", port, cwd=REPO)
    print(f"   {' '.join(cmd[1:])}")
    METRICS_PORT[srv.pid] = metrics
    wait_until(lambda: http_status(f"http://127.0.0.1:{ready}/ready") == 200, ready_timeout,
               f"{name} /ready", srv)
    return srv

def start_floor(procs: Procs, work: Path, python: str) -> Server:
    """The floor (benchkit/floor.py): a bare receive-and-send loop on ``python``."""
    port = free_port()
    srv = procs.start("floor", [python, str(Path(__file__).with_name("floor.py")), str(port)],
                      work / "floor.log", port)
    sock = udp_socket(port)
    try:
        wait_until(lambda: query_a(sock, f"h0.{ZONE}", 0.2) is not None, 30,
                   "floor answering", srv)
    finally:
        sock.close()
    return srv

def record_name(i: int) -> str:
    """The i-th record's name below the zone (benchkit.dataset)."""
    return f"h{i}"

def check_answers(srv: Server, n: int, zone: str = ZONE,
                  name: Callable[[int], str] = record_name) -> None:
    """Fail loudly if the server does not answer like the records say: ``name(i)`` in
    ``zone`` has the address ``ip_for(i)``."""
    sock = udp_socket(srv.port)
    try:
        wait_until(lambda: query_a(sock, f"{name(0)}.{zone}", 0.2) is not None, 60,
                   f"{srv.name} answering DNS", srv)
        for i in {0, n // 2, n - 1}:
            got = query_a(sock, f"{name(i)}.{zone}", 1.0)
            if got != (0, [ip_for(i)]):
                raise RuntimeError(f"{srv.name}: {name(i)}.{zone} -> {got}, want {ip_for(i)}")
        got = query_a(sock, f"nx0.{zone}", 1.0)
        if got is None or got[0] != 3:
            print(f"!! {srv.name}: nx0.{zone} -> {got}, expected NXDOMAIN (rcode 3)")
    finally:
        sock.close()

def start_dnsmasq(procs: Procs, work: Path, upstream: int, forward_max: int) -> Server:
    port, d = free_port(), work / "dnsmasq"
    d.mkdir()
    cmd = ["dnsmasq", "--no-daemon", "--port", str(port), "--listen-address", "127.0.0.1",
           "--bind-interfaces", "--no-resolv", "--no-hosts", "--conf-file=/dev/null",
           "--pid-file=", "--user=root", "--log-facility=-",
           "--server", f"127.0.0.1#{upstream}", "--cache-size=0",
           f"--dns-forward-max={forward_max}"]
    srv = procs.start("dnsmasq", cmd, d / "dnsmasq.log", port)
    print(f"   {' '.join(cmd)}")
    return srv

def start_unbound(procs: Procs, work: Path, upstream: int) -> Server:
    port, d = free_port(), work / "unbound"
    d.mkdir()
    conf = d / "unbound.conf"
    conf.write_text(
        f'server:\n  interface: 127.0.0.1@{port}\n  port: {port}\n  num-threads: 1\n'
        f'  username: ""\n  chroot: ""\n  directory: "{d}"\n  pidfile: ""\n'
        '  use-syslog: no\n  logfile: ""\n  verbosity: 1\n  do-ip6: no\n'
        '  access-control: 127.0.0.0/8 allow\n  do-not-query-localhost: no\n'
        '  module-config: "iterator"\n  auto-trust-anchor-file: ""\n'
        '  msg-cache-size: 64m\n  rrset-cache-size: 128m\n'
        '  local-zone: "test." nodefault\n'  # unbound answers RFC 6761 test. itself otherwise
        'remote-control:\n  control-enable: no\n'
        f'forward-zone:\n  name: "{UP_ZONE}"\n  forward-addr: 127.0.0.1@{upstream}\n')
    srv = procs.start("unbound", ["unbound", "-d", "-c", str(conf)], d / "unbound.log", port)
    print(f"   unbound -d -c {conf}: num-threads 1, msg-cache 64m, rrset-cache 128m,"
          f" forward-zone {UP_ZONE} -> 127.0.0.1@{upstream}")
    return srv

_ODD = re.compile(r"(?i)\b(error|warn\w*|traceback|exception|critical|fatal|maximum number"
                  r"|refused|failed|failing)\b")

def odd_log_lines(path: Path, limit: int = 12) -> tuple[int, list[str]]:
    """(count, first lines) of log lines that look like errors or warnings."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return 0, []
    hits, i = [], 0
    while i < len(lines):
        if _ODD.search(lines[i]):
            hits.append(lines[i])
            if lines[i].startswith("Traceback"):  # keep the whole traceback, as one entry
                j = i + 1
                while j < len(lines) and (lines[j][:1].isspace() or not lines[j]):
                    j += 1
                hits[-1] = "\n".join(lines[i:j + 1])
                i = j
        i += 1
    return len(hits), hits[:limit]

def stop_noting_logs(procs: Procs, srv: Server, logs: dict[str, Any]) -> None:
    """Stop a server and keep the lines of its log that look like errors or warnings."""
    procs.stop(srv)
    n, lines = odd_log_lines(srv.log)
    logs[srv.name] = {"log": str(srv.log), "odd_lines": n, "first": lines}
    if n:
        print(f"!! {srv.name}: {n} error/warning lines in its log, first: {lines[0]!r}")

def sky_metrics(srv: Server) -> dict[str, Any]:
    """A few of skyserve's own counters (summed over labels and, with --workers, workers)."""
    keep = ("coredns_panics_total", "coredns_forward_max_concurrent_rejects_total",
            "coredns_cache_hits_total", "coredns_cache_misses_total",
            "coredns_cache_evictions_total", "coredns_cache_entries",
            "coredns_forward_requests_total", "coredns_dns_requests_total",
            "coredns_proxy_healthcheck_failures_total")
    try:
        m = scrape(METRICS_PORT[srv.pid])
    except (OSError, KeyError) as e:
        return {"error": str(e)}
    return {k: m[k] for k in keep if k in m}
