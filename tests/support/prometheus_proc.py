"""Run a real Prometheus (Debian's `prometheus`) on loopback for tests and scripts.

It scrapes the given jobs every second into a temporary storage directory and evaluates the
given rule files; `query` and `query_range` use its HTTP API. Stopped by its own PID.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from tests.support.netutil import free_port, http_get
from tests.support.procutil import LoggedProcess

__all__ = ["PrometheusProcess", "find_prometheus"]

HOST = "127.0.0.1"


def find_prometheus(tool: str = "prometheus") -> str:
    """Path of `prometheus` or `promtool`; scripts/setup-dev installs Debian's package."""
    found = shutil.which(tool)
    if found is None:
        raise RuntimeError(f"{tool} not found: run scripts/setup-dev (Debian package prometheus)")
    return found


class PrometheusProcess(LoggedProcess):
    """One Prometheus scraping `jobs` ({job name: [host:port, ...]}) every `interval`."""

    def __init__(self, jobs: Mapping[str, Sequence[str]], rule_files: Sequence[Path] = (),
                 work: Path | None = None, interval: str = "1s") -> None:
        self.work = Path(work) if work is not None else Path(tempfile.mkdtemp(prefix="prom-"))
        self.work.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        config = {
            "global": {"scrape_interval": interval, "evaluation_interval": interval,
                       "scrape_timeout": interval},
            "rule_files": [str(p) for p in rule_files],
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": list(targets)}]}
                               for job, targets in jobs.items()],
        }
        self.config_path = self.work / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config))
        super().__init__(self.work / "prometheus.log")

    def start(self, timeout: float = 20.0) -> PrometheusProcess:
        self._spawn([
            find_prometheus(), f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.work / 'data'}",
            f"--web.listen-address={HOST}:{self.port}",
            "--storage.tsdb.retention.time=1d", "--log.level=warn",
        ])
        deadline = time.monotonic() + timeout
        while not self._ready():
            if not self.running:
                raise RuntimeError(f"prometheus exited with {self.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"prometheus not ready after {timeout}s:\n{self.log_tail()}")
            time.sleep(0.1)
        return self

    def _ready(self) -> bool:
        try:
            return http_get(self.port, "/-/ready", timeout=1.0)[0] == 200
        except OSError:
            return False

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>: its `data`; RuntimeError with Prometheus's message on error."""
        query = urllib.parse.urlencode(params)
        status, body = http_get(self.port, f"/api/v1/{path}?{query}", timeout=10.0)
        answer = json.loads(body)
        if status != 200 or answer.get("status") != "success":
            raise RuntimeError(f"{path} {params}: {answer.get('error', body[:300])}")
        return answer["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result (a vector; a scalar comes back as one unlabelled sample)."""
        data = self.api("query", query=expr)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def query_range(self, expr: str, start: float, end: float, step: float
                    ) -> list[dict[str, Any]]:
        data = self.api("query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}",
                        step=f"{step:g}")
        return list(data["result"])

    def targets_up(self) -> dict[str, bool]:
        """{scrape URL: last scrape healthy} for every active target."""
        return {t["scrapeUrl"]: t["health"] == "up" for t in self.api("targets")["activeTargets"]}

    def __repr__(self) -> str:
        return f"PrometheusProcess(port={self.port}, pid={self.pid})"
