"""Run the real bridge (`python -m kube2etcd`) as a subprocess for tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from tests.netutil import free_port, http_get
from tests.skyserve_proc import REPO_ROOT

HOST = "127.0.0.1"


class BridgeProcess:
    """One kube2etcd process; stdout+stderr go to a log file. Stopped by its PID only."""

    def __init__(self, kubeconfig: str | Path, etcd_endpoint: str, prefix: str, log_dir: Path,
                 extra_args: Sequence[str] = (), name: str = "bridge") -> None:
        self.kubeconfig = str(kubeconfig)
        self.etcd_endpoint = etcd_endpoint
        self.prefix = prefix
        self.extra_args = list(extra_args)
        self.health_port = free_port()
        self.metrics_port = free_port()
        self.log_path = log_dir / f"{name}-{self.health_port}.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def argv(self) -> list[str]:
        return [
            sys.executable, "-m", "kube2etcd",
            "--kubeconfig", self.kubeconfig,
            "--etcd-endpoints", self.etcd_endpoint,
            "--etcd-prefix", self.prefix,
            "--domain", "cluster.local",
            "--health-addr", f"{HOST}:{self.health_port}",
            "--metrics-addr", f"{HOST}:{self.metrics_port}",
            "--watch-timeout", "4s",
            "--etcd-timeout", "2s",
            *self.extra_args,
        ]  # fmt: skip

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> BridgeProcess:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()/kill()
        self._proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=self._log,
                                      stderr=subprocess.STDOUT, cwd=str(REPO_ROOT), env=env,
                                      start_new_session=True)
        return self

    def status(self, path: str, port: int | None = None) -> tuple[int | None, str]:
        try:
            return http_get(port or self.health_port, path, timeout=1.0)
        except Exception:
            return None, ""

    def wait_ready(self, timeout: float = 15.0) -> BridgeProcess:
        deadline = time.monotonic() + timeout
        retries = 2
        while self.status("/readyz")[0] != 200:
            if not self.running:
                if retries and "Address already in use" in self.log_tail(5):
                    # Another process took one of our free ports before we bound it.
                    retries -= 1
                    self._close()
                    self.health_port, self.metrics_port = free_port(), free_port()
                    self.start()
                    continue
                raise RuntimeError(f"kube2etcd exited with {self.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"kube2etcd not ready after {timeout}s:\n{self.log_tail()}")
            time.sleep(0.05)
        return self

    def metric(self, name: str) -> float | None:
        """A sample's value from /metrics (`name` includes any labels, as printed)."""
        code, body = self.status("/metrics", self.metrics_port)
        if code != 200:
            return None
        for line in body.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
        return None

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc is not None else None

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; returns the exit code."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close()
        return proc.returncode

    def kill(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)
        self._close()

    def log_text(self) -> str:
        if self._log is not None:
            with contextlib.suppress(Exception):
                self._log.flush()
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def _close(self) -> None:
        log, self._log = self._log, None
        if log is not None:
            with contextlib.suppress(Exception):
                log.close()

    def __repr__(self) -> str:
        return f"BridgeProcess(pid={self.pid}, health={self.health_port})"
