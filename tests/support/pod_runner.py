"""Run the containers of a rendered pod spec as local processes (for tests/test_pod.py).

Only what cannot work outside a cluster is changed, and always the same way:
* every loopback or wildcard port (``:8080``, ``0.0.0.0:2381``, ``http://127.0.0.1:2379``) is
  moved to a free loopback port; the pod shares one network namespace, so one `PortMap` serves
  every container (and the ConfigMap);
* a path under a volume mount is moved into a temporary directory holding that volume
  (an emptyDir is an empty directory, a configMap volume holds the ConfigMap's keys);
* the program is replaced by a local one (the caller decides which).
Everything else in ``command``/``args``/``env`` is passed on untouched.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.support.netutil import free_port
from tests.support.procutil import LoggedProcess

__all__ = ["PortMap", "Process", "materialize_volumes", "rewrite_args", "rewrite_paths"]

HOST = "127.0.0.1"
# An address on loopback or every interface, with or without a scheme, starting a string,
# a quoted string, a list item or a flag's value. Other hosts (a real server) are left alone.
_ADDR = re.compile(
    r"(?:(?<=[\"',=])|^)"
    r"(?P<scheme>[a-z][a-z0-9+.-]*://)?"
    r"(?P<host>127\.0\.0\.1|localhost|0\.0\.0\.0|\[::1?\])?"
    r":(?P<port>\d{1,5})(?![\d.])"
)


class PortMap:
    """The pod's port numbers -> free loopback ports, handed out on first use."""

    def __init__(self) -> None:
        self.ports: dict[int, int] = {}

    def __getitem__(self, port: int) -> int:
        if port not in self.ports:
            self.ports[port] = free_port()
        return self.ports[port]

    def known(self, port: int) -> int:
        """The local port of a pod port some program was told to use; KeyError if none was."""
        return self.ports[port]

    def rewrite(self, text: str) -> str:
        """Every loopback/wildcard address in `text` moved to 127.0.0.1:<its free port>."""
        def sub(m: re.Match[str]) -> str:
            return f"{m['scheme'] or ''}{HOST}:{self[int(m['port'])]}"

        return _ADDR.sub(sub, text)


def rewrite_paths(value: str, mounts: Mapping[str, Path]) -> str:
    """`value` with a leading volume mount path replaced by the volume's local directory."""
    for mount, local in sorted(mounts.items(), key=lambda kv: -len(kv[0])):
        if value == mount or value.startswith(mount.rstrip("/") + "/"):
            return str(local) + value[len(mount.rstrip("/")):]
    return value


def rewrite_args(args: Sequence[str], ports: PortMap, mounts: Mapping[str, Path]) -> list[str]:
    """Addresses and volume paths rewritten in every argument (``--flag=value`` or a bare one).

    An absolute path outside every volume would be read from (or written to) this machine:
    that is refused (ValueError), since with a read-only root filesystem it is also wrong."""
    out = []
    for arg in args:
        flag, eq, value = arg.partition("=") if arg.startswith("-") else ("", "", arg)
        if arg.startswith("-") and not eq:
            out.append(arg)
            continue
        value = rewrite_paths(ports.rewrite(value), mounts)
        if value.startswith("/") and not any(value.startswith(str(p)) for p in mounts.values()):
            raise ValueError(f"{arg!r}: a path outside the container's volumes")
        out.append(f"{flag}{eq}{value}")
    return out


def materialize_volumes(pod: Mapping[str, Any], configmaps: Mapping[str, Mapping[str, Any]],
                        base: Path, edit: Callable[[str, str], str]) -> dict[str, Path]:
    """A local directory per pod volume: emptyDir empty, configMap holding its keys (each
    passed through `edit(key, text)`), anything else (e.g. the projected API token) empty."""
    out = {}
    for vol in pod.get("volumes", []):
        path = base / f"volume-{vol['name']}"
        path.mkdir(parents=True)
        if "configMap" in vol:
            data = configmaps[vol["configMap"]["name"]].get("data", {})
            items = vol["configMap"].get("items") or [{"key": k, "path": k} for k in data]
            for item in items:
                (path / item["path"]).write_text(edit(item["key"], data[item["key"]]))
        out[vol["name"]] = path
    return out


class Process(LoggedProcess):
    """One container's process; output goes to a log file. Signalled by its own PID only.

    Unlike stop(), terminate() only sends SIGTERM, so that the caller can signal every
    container first and then time how long each one takes to exit."""

    tail_lines = 30

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str], log_dir: Path,
                 cwd: Path) -> None:
        super().__init__(log_dir / f"{name}.log")
        self.name, self.argv, self.env, self.cwd = name, list(argv), dict(env), cwd
        self.signalled_at: float | None = None
        self.exited_at: float | None = None

    def start(self) -> Process:
        self._spawn(self.argv, header=f"=== {' '.join(self.argv)}\n", env=self.env, cwd=self.cwd)
        return self

    def terminate(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self.signalled_at = time.monotonic()
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._proc.pid, signal.SIGTERM)

    def wait(self, timeout: float) -> int | None:
        """The exit code, or None if still running after `timeout` seconds."""
        assert self._proc is not None
        try:
            code = self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        if self.exited_at is None:
            self.exited_at = time.monotonic()
        return code

    def close(self) -> None:
        self._close_log()

    def log_tail(self, lines: int | None = None) -> str:
        return f"----- {self.name} -----\n" + super().log_tail(lines)
