"""Run the real skyserve DNS server (`python -m skyserve`) as a subprocess for tests."""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rdatatype

from tests.support.netutil import free_port, http_status, metric_families
from tests.support.procutil import REPO_ROOT, LoggedProcess, repo_python_env

__all__ = ["REPO_ROOT", "SkyserveProcess"]

HOST = "127.0.0.1"


class SkyserveProcess(LoggedProcess):
    """One `python -m skyserve` process listening on free loopback ports.

    stdout+stderr go to `log_path` (a file, never a pipe). The repository root
    is put first on PYTHONPATH so the working-tree `skyserve` package is used.
    """

    tail_lines = 60

    def __init__(
        self,
        etcd_endpoints: str | Sequence[str],
        zones: Sequence[str],
        *,
        prefix: str = "/skydns",
        extra_args: Sequence[str] = (),
        log_dir: str | Path | None = None,
        dns_port: int | None = None,
        health_port: int | None = None,
        ready_port: int | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if not zones:
            raise ValueError("at least one zone is required")
        self.etcd_endpoints = (
            etcd_endpoints if isinstance(etcd_endpoints, str) else ",".join(etcd_endpoints)
        )
        self.zones = list(zones)
        self.prefix = prefix
        self.extra_args = list(extra_args)
        self.dns_port: int = dns_port if dns_port is not None else free_port()
        self.health_port: int = health_port if health_port is not None else free_port()
        self.ready_port: int = ready_port if ready_port is not None else free_port()
        self.metrics_port: int = free_port()
        if log_dir is None:
            log_dir = tempfile.mkdtemp(prefix="skyserve-")
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        super().__init__(self.log_dir / f"skyserve-{self.dns_port}.log")
        self._env = dict(env) if env is not None else None

    # ----------------------------------------------------------------- info
    def argv(self) -> list[str]:
        zone_args = [a for z in self.zones for a in ("--zone", z)]
        return [
            sys.executable, "-m", "skyserve",
            "--etcd-endpoints", self.etcd_endpoints,
            *zone_args,
            "--dns-addr", f"{HOST}:{self.dns_port}",
            "--health-addr", f"{HOST}:{self.health_port}",
            "--ready-addr", f"{HOST}:{self.ready_port}",
            "--metrics-addr", f"{HOST}:{self.metrics_port}",
            "--etcd-prefix", self.prefix,
            # Never the machine's resolver: tests talk to loopback only.
            "--resolv-conf", "",
            "--lameduck", "0",  # tests that check lameduck pass their own
            *self.extra_args,
        ]  # fmt: skip

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Spawn the server (does not wait; see wait_ready())."""
        if self.running:
            raise RuntimeError(f"skyserve already running (pid {self.pid})")
        env = repo_python_env(self._env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        self._spawn(self.argv(), header=f"=== start {' '.join(self.argv())}\n", env=env,
                    cwd=str(REPO_ROOT))

    def http_status(self, port: int, path: str, timeout: float = 1.0) -> int | None:
        """HTTP status of GET path on our loopback port, None if no answer."""
        return http_status(port, path, timeout)

    def is_ready(self, timeout: float = 1.0) -> bool:
        return self.http_status(self.ready_port, "/ready", timeout) == 200

    def is_healthy(self, timeout: float = 1.0) -> bool:
        return self.http_status(self.health_port, "/health", timeout) == 200

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Poll /ready until HTTP 200; RuntimeError (with log tail) on exit/timeout."""
        deadline = time.monotonic() + timeout
        while True:
            if self._proc is None:
                raise RuntimeError("skyserve was not started")
            rc = self._proc.poll()
            if rc is not None:
                raise RuntimeError(f"skyserve exited with {rc} before ready:\n{self.log_tail()}")
            if self.is_ready(timeout=1.0):
                return
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"skyserve not ready after {timeout:.0f}s "
                    f"(last /ready status {self.http_status(self.ready_port, '/ready')}):\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.1)

    def __enter__(self) -> SkyserveProcess:
        if not self.running:
            self.start()
            self.wait_ready()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"SkyserveProcess(dns=127.0.0.1:{self.dns_port}, pid={self.pid})"

    # ------------------------------------------------------------------ DNS
    def query(
        self,
        name: str,
        rdtype: str | int | dns.rdatatype.RdataType = "A",
        tcp: bool = False,
        *,
        timeout: float = 2.0,
        **make_query_kwargs: Any,
    ) -> dns.message.Message:
        """Send one query (UDP by default, TCP if tcp=True) and return the response.

        Extra keyword arguments go to dns.message.make_query (use_edns, payload,
        want_dnssec, flags, rdclass, ...). Raises dns.exception.Timeout on no answer.
        """
        q = dns.message.make_query(name, dns.rdatatype.RdataType.make(rdtype), **make_query_kwargs)
        if tcp:
            return dns.query.tcp(q, HOST, timeout=timeout, port=self.dns_port)
        return dns.query.udp(q, HOST, timeout=timeout, port=self.dns_port)

    # -------------------------------------------------------------- metrics
    def scrape(self, timeout: float = 2.0) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        """GET /metrics and parse it: {(sample name, labels): value}."""
        return {
            (s.name, frozenset(s.labels.items())): s.value
            for family in metric_families(self.metrics_port, timeout)
            for s in family.samples
        }

    def metric(self, name: str, **labels: str) -> float:
        """The sum of the samples called ``name`` whose labels include ``labels``."""
        wanted = set(labels.items())
        return sum(v for (n, ls), v in self.scrape().items() if n == name and wanted <= ls)
