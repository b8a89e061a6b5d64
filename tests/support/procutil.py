"""What the process harnesses share: a child started with its output in a log file, stopped
by its own PID (SIGTERM, then SIGKILL), and the tail of that log for error messages.

EtcdServer, SkyserveProcess, BridgeProcess and pod_runner.Process differ in their argv and in
how they tell that the program is up, not in how a program is run; keeping that part here
means a fix (e.g. SIGKILL after a SIGTERM that hangs) reaches all of them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

__all__ = ["REPO_ROOT", "LoggedProcess", "repo_python_env"]

REPO_ROOT = Path(__file__).resolve().parents[2]


def repo_python_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """`base` (default: our environment) for a `python -m <package>` child: the repository
    root first on PYTHONPATH, so the working tree's packages run, not an installed copy."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    return env


class LoggedProcess:
    """One child process whose stdout+stderr go to `log_path`.

    The output goes to a file, never a pipe: a pipe nobody reads would block the child. The
    child gets its own session, and signals go to its PID only (never to a process name).
    """

    tail_lines = 40  # how many lines log_tail() returns by default

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _spawn(self, argv: Sequence[str], *, header: str = "",
               env: Mapping[str, str] | None = None, cwd: str | Path | None = None) -> None:
        """Start `argv`, appending its output to the log after `header` (if any)."""
        self._close_log()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()/kill()
        if header:
            self._log.write(header.encode())
            self._log.flush()
        self._proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM our process, SIGKILL after `timeout` s; returns the exit code."""
        return self._terminate(timeout)

    def kill(self) -> int | None:
        """SIGKILL our process (a crash) and reap it; returns the exit code."""
        return self._kill()

    def _terminate(self, timeout: float, kill_wait: float = 5.0, *,
                   resume: bool = False) -> int | None:
        """SIGTERM (and SIGCONT if `resume`: a stopped process handles SIGTERM only after it),
        SIGKILL if it still runs after `timeout` s; then reap it and close the log."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
                if resume:
                    os.kill(proc.pid, signal.SIGCONT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=timeout)
        return self._kill(kill_wait)  # only kills if SIGTERM did not end it

    def _kill(self, wait: float = 5.0) -> int | None:
        """SIGKILL, reap (waiting at most `wait` s) and close the log."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=wait)
        self._close_log()
        return proc.returncode

    def log_text(self) -> str:
        """Everything the process wrote to stdout/stderr so far ("" if there is no log)."""
        if self._log is not None:
            with contextlib.suppress(Exception):
                self._log.flush()
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int | None = None) -> str:
        """The last `lines` lines of the log (default: `tail_lines`), for error messages."""
        count = self.tail_lines if lines is None else lines
        return "\n".join(self.log_text().splitlines()[-count:])

    def _close_log(self) -> None:
        log, self._log = self._log, None
        if log is not None:
            with contextlib.suppress(Exception):
                log.close()
