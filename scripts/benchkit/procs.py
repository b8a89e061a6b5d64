"""Processes the benchmarks start (stopped by PID with their descendants) and their /proc
accounting: CPU ticks, RSS, how busy the machine is."""

from __future__ import annotations

import os
import resource
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO


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

def context_switches(root: int) -> tuple[int, int]:
    """Voluntary and involuntary context switches of root and its live descendants, over all
    their threads (/proc/PID/task/TID/status). At a fixed rate they tell a server that
    sleeps between queries from one its client preempts on a shared CPU, which cost
    different CPU a query for the same code (docs/benchmarks.md, session 8)."""
    voluntary = involuntary = 0
    for pid in [root, *descendants(root)]:
        try:
            threads = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in threads:
            try:
                status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                name, _, value = line.partition(":")
                if name == "voluntary_ctxt_switches":
                    voluntary += int(value)
                elif name == "nonvoluntary_ctxt_switches":
                    involuntary += int(value)
    return voluntary, involuntary

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

CLK_TCK = os.sysconf("SC_CLK_TCK")

NCPU = os.cpu_count() or 1


def interpreter_version(python: str) -> str:
    """What ``python`` is (``sys.version``): the figures depend on it."""
    ver = subprocess.run([python, "-c", "import sys; print(sys.version)"],
                         capture_output=True, text=True, timeout=30, check=True)
    return ver.stdout.strip()
