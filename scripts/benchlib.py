"""Helpers for scripts/bench-dns: processes, /proc accounting, etcd gateway, tiny DNS client."""

from __future__ import annotations

import base64
import http.client
import json
import math
import os
import random
import re
import resource
import socket
import struct
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

# ---------------------------------------------------------------- processes


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    port: int = 0

    @property
    def pid(self) -> int:
        return self.proc.pid


class Procs:
    """Everything we started; stopped by PID (and each one's descendants) on exit."""

    def __init__(self) -> None:
        self.servers: list[Server] = []
        self._files: list[IO[bytes]] = []

    def start(self, name: str, cmd: list[str], log: Path, port: int = 0,
              cwd: Path | None = None) -> Server:
        f = log.open("wb")
        self._files.append(f)
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=cwd, start_new_session=True)
        srv = Server(name, proc, log, port)
        self.servers.append(srv)
        print(f"started {name} pid {proc.pid}" + (f" on 127.0.0.1:{port}" if port else ""))
        return srv

    def stop(self, srv: Server) -> None:
        kids = descendants(srv.pid)
        if srv.proc.poll() is None:
            srv.proc.terminate()
            try:
                srv.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                srv.proc.kill()
                srv.proc.wait(timeout=10)
        deadline = time.monotonic() + 5
        for pid in kids:  # workers that outlived their parent
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if pid_alive(pid):
                os.kill(pid, 9)
        if srv in self.servers:
            self.servers.remove(srv)

    def stop_all(self) -> None:
        for srv in reversed(list(self.servers)):
            try:
                self.stop(srv)
            except Exception as e:  # keep going: stop the others
                print(f"stopping {srv.name} (pid {srv.pid}): {e}")
        for f in self._files:
            f.close()

    def dump_logs(self, tail: int = 3000) -> None:
        for srv in self.servers:
            text = srv.log.read_text(errors="replace")[-tail:] if srv.log.exists() else ""
            print(f"--- {srv.name} log ({srv.log}), last {tail} chars:\n{text}")


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _stat_fields(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                children.setdefault(int(_stat_fields(int(d))[1]), []).append(int(d))
            except (OSError, IndexError):
                continue
    out, todo = [], [root]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def cpu_ticks(root: int) -> int:
    """utime+stime of root and its live descendants, in clock ticks."""
    total = 0
    for pid in [root, *descendants(root)]:
        try:
            f = _stat_fields(pid)  # fields after "(comm)": utime is 14th overall -> index 11
            total += int(f[11]) + int(f[12])
        except (OSError, IndexError):
            continue
    return total


def cpu_ticks_by_pid(root: int) -> dict[int, int]:
    """utime+stime of root and of each live descendant, separately (e.g. per worker)."""
    out = {}
    for pid in [root, *descendants(root)]:
        try:
            f = _stat_fields(pid)
            out[pid] = int(f[11]) + int(f[12])
        except (OSError, IndexError):
            continue
    return out


def children_cpu_s() -> float:
    """CPU seconds of every child this process has reaped so far (e.g. finished dnsperf runs)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def box_cpu() -> tuple[int, int]:
    """(busy, total) clock ticks of the whole machine, from the first line of /proc/stat."""
    vals = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)  # idle + iowait
    total = sum(vals[:8])  # guest time is already counted in user/nice
    return total - idle, total


def box_busy_pct(seconds: float) -> float:
    """How busy the whole machine is over the next ``seconds``, in % of all its cores."""
    b0, t0 = box_cpu()
    time.sleep(seconds)
    b1, t1 = box_cpu()
    return 100 * (b1 - b0) / max(1, t1 - t0)


def wait_quiet(max_wait: float, threshold_pct: float) -> tuple[float, float]:
    """Wait (at most max_wait s) for a second in which the machine is at most threshold_pct
    busy; returns (busy % of the last second, seconds waited)."""
    start = time.monotonic()
    while True:
        busy = box_busy_pct(1.0)
        waited = time.monotonic() - start
        if busy <= threshold_pct or waited >= max_wait:
            return busy, waited


def rss_kb(root: int) -> int:
    """Sum of VmRSS over root and descendants (shared pages counted per process)."""
    total = 0
    for pid in [root, *descendants(root)]:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def wait_until(cond: Callable[[], bool], timeout: float, what: str,
               srv: Server | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if srv is not None and srv.proc.poll() is not None:
            raise RuntimeError(f"{srv.name} exited with {srv.proc.returncode} "
                               f"while waiting for {what}")
        if cond():
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out after {timeout}s waiting for {what}")


def free_port() -> int:
    """A loopback port free for both TCP and UDP right now."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind(("127.0.0.1", 0))
            port = int(t.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind(("127.0.0.1", port))
                except OSError:
                    continue
        return port
    raise RuntimeError("no free port")


def percentile(sorted_vals: list[float], p: float) -> float:
    if not sorted_vals:
        return math.nan
    idx = max(0, math.ceil(p / 100 * len(sorted_vals)) - 1)
    return sorted_vals[min(idx, len(sorted_vals) - 1)]


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


def scrape(port: int) -> dict[str, float]:
    """Prometheus text from 127.0.0.1:port/metrics, summed per metric name over all labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, _, value = line.rpartition(" ")
        name = name_labels.split("{", 1)[0]
        try:
            out[name] = out.get(name, 0.0) + float(value)
        except ValueError:
            continue
    return out


# ---------------------------------------------------------------- etcd JSON gateway

_conns: dict[int, http.client.HTTPConnection] = {}


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except (OSError, http.client.HTTPException):
        return 0


def _etcd(port: int, path: str, body: dict[str, object]) -> None:
    conn = _conns.get(port) or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    _conns[port] = conn
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    if resp.status != 200:
        raise RuntimeError(f"etcd {path}: HTTP {resp.status}: {data[:300]!r}")


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def etcd_put(port: int, key: str, value: str) -> None:
    _etcd(port, "/v3/kv/put", {"key": _b64(key), "value": _b64(value)})


def etcd_txn_put(port: int, kvs: list[tuple[str, str]]) -> None:
    ops = [{"requestPut": {"key": _b64(k), "value": _b64(v)}} for k, v in kvs]
    _etcd(port, "/v3/kv/txn", {"success": ops})


# ---------------------------------------------------------------- minimal DNS client


def udp_socket(port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect(("127.0.0.1", port))
    return s


def _skip_name(buf: bytes, off: int) -> int:
    while True:
        n = buf[off]
        if n == 0:
            return off + 1
        if n & 0xC0 == 0xC0:
            return off + 2
        off += 1 + n


def query_a(sock: socket.socket, name: str, timeout: float) -> tuple[int, list[str]] | None:
    """Send one A query; return (rcode, [A addresses]) or None on timeout."""
    qid = random.randrange(65536)
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\0"
    try:
        sock.send(struct.pack(">6H", qid, 0x0100, 1, 0, 0, 0) + qname + struct.pack(">2H", 1, 1))
    except ConnectionRefusedError:  # ICMP from an earlier query: nobody listening yet
        return None
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            buf = sock.recv(65535)
        except (TimeoutError, ConnectionRefusedError):
            return None
        rid, flags, qd, an = struct.unpack(">4H", buf[:8])
        if rid != qid:
            continue  # late answer to an earlier query
        off = 12
        for _ in range(qd):
            off = _skip_name(buf, off) + 4
        ips = []
        for _ in range(an):
            off = _skip_name(buf, off)
            rtype, _cls, _ttl, rdlen = struct.unpack(">HHIH", buf[off:off + 10])
            off += 10
            if rtype == 1 and rdlen == 4:
                ips.append(socket.inet_ntoa(buf[off:off + 4]))
            off += rdlen
        return flags & 0xF, ips
    return None
