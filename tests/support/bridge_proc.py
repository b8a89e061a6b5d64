"""Run the real bridge (`python -m kube2etcd`) as a subprocess for tests."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tests.support.netutil import free_port, http_get
from tests.support.procutil import REPO_ROOT, LoggedProcess, repo_python_env

HOST = "127.0.0.1"


class BridgeProcess(LoggedProcess):
    """One kube2etcd process; stdout+stderr go to a log file. Stopped by its PID only."""

    def __init__(self, kubeconfig: str | Path, etcd_endpoint: str, prefix: str, log_dir: Path,
                 extra_args: Sequence[str] = (), name: str = "bridge") -> None:
        self.kubeconfig = str(kubeconfig)
        self.etcd_endpoint = etcd_endpoint
        self.prefix = prefix
        self.extra_args = list(extra_args)
        self.health_port = free_port()
        self.metrics_port = free_port()
        super().__init__(log_dir / f"{name}-{self.health_port}.log")

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

    def start(self) -> BridgeProcess:
        # No header line in the log: the argv may hold a password the tests look for.
        env = repo_python_env()
        env["PYTHONUNBUFFERED"] = "1"
        self._spawn(self.argv(), env=env, cwd=str(REPO_ROOT))
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
                    self._close_log()
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

    def __repr__(self) -> str:
        return f"BridgeProcess(pid={self.pid}, health={self.health_port})"
