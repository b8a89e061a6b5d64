"""Run `scripts/run-local` on free loopback ports, as a user would from a terminal.

It gets its own session, like a terminal's foreground job, so `ctrl_c()` can send SIGINT to
its process group as a terminal's Ctrl-C does. `shell()` runs a command in a bash that has
the `export` line run-local prints, which the README tells the user to paste.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from tests.support.netutil import free_port, free_port_pair
from tests.support.procutil import REPO_ROOT, LoggedProcess

__all__ = ["ANSWERING", "RunLocal"]

ANSWERING = "skyserve is answering on"
PORT_VARIABLES = ("DNS_PORT", "HEALTH_PORT", "READY_PORT", "METRICS_PORT")
# What a user's shell would not have: settings that would point the commands elsewhere.
_FOREIGN = ("SKYSERVE_", "ETCDCTL_", "DNS_PORT", "ETCD_MEMBERS", "UPSTREAM")


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(_FOREIGN)}


class RunLocal(LoggedProcess):
    def __init__(self, log_dir: Path) -> None:
        self.ports = {name: free_port() for name in PORT_VARIABLES}
        self.ports["ETCD_PORT"] = free_port_pair()
        super().__init__(log_dir / f"run-local-{self.ports['DNS_PORT']}.log")

    def start(self) -> RunLocal:
        env = {**clean_env(), **{k: str(v) for k, v in self.ports.items()}}
        self._spawn([str(REPO_ROOT / "scripts" / "run-local")], env=env, cwd=REPO_ROOT)
        return self

    def wait_answering_or_exit(self, timeout: float = 90.0) -> bool:
        """True once run-local says skyserve answers; False if it exits first or never does."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ANSWERING in self.log_text():
                return True
            if not self.running:
                return ANSWERING in self.log_text()
            time.sleep(0.1)
        return False

    def wait_exit(self, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        while self.running and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.returncode

    def export_line(self) -> str:
        lines = [line.strip() for line in self.log_text().splitlines()]
        [line] = [line for line in lines if line.startswith("export ")]
        return line

    def instructions(self) -> list[str]:
        """The commands run-local tells the user to try (indented dig/etcdctl lines)."""
        return [line.strip() for line in self.log_text().splitlines()
                if line.startswith(("  dig ", "  etcdctl "))]

    def shell(self, command: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """`command` in a bash where run-local's export line was pasted first."""
        return subprocess.run(["bash", "-c", f"{self.export_line()}\n{command}"],
                              env=clean_env(), capture_output=True, text=True, timeout=timeout)

    def background(self, command: str, output: Path) -> subprocess.Popen[bytes]:
        """`command` left running, as in another terminal; its PID is the command's own."""
        with open(output, "wb") as out:
            return subprocess.Popen(["bash", "-c", f"{self.export_line()}\nexec {command}"],
                                    env=clean_env(), stdout=out, stderr=subprocess.STDOUT)

    def ctrl_c(self) -> None:
        """SIGINT to run-local's process group (its session, which it leads): a Ctrl-C."""
        assert self.pid is not None
        os.killpg(self.pid, signal.SIGINT)
