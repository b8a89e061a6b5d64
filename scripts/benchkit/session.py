"""What every benchmark does around a run: a work dir on /dev/shm, errors and signals reported,
every process stopped by PID."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchkit.procs import Procs


def on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def bench_main(prog: str, keep: bool, json_path: Path | None,
               run: Callable[[Procs, Path], dict[str, Any]],
               report: Callable[[dict[str, Any]], None]) -> int:
    """A benchmark's main: run it in a session, print its report, write its JSON if asked."""
    signal.signal(signal.SIGTERM, on_sigterm)

    def body(procs: Procs, work: Path) -> None:
        res = run(procs, work)
        report(res)
        if json_path:
            json_path.write_text(json.dumps(res, indent=2) + "\n")

    return run_session(prog, keep, body)


def run_session(prog: str, keep: bool, body: Callable[[Procs, Path], None]) -> int:
    """Run ``body(procs, work)``; whatever happens, stop every process it started and remove
    the work dir (unless ``keep``). Returns the exit status: 0, 1 on an error, 130 when
    interrupted (SIGINT, or SIGTERM with on_sigterm installed)."""
    work = Path(tempfile.mkdtemp(prefix=f"{prog}-", dir="/dev/shm"))
    procs = Procs()
    try:
        body(procs, work)
        return 0
    except (RuntimeError, subprocess.SubprocessError, OSError) as e:
        print(f"\n{prog}: error: {e}", file=sys.stderr)
        procs.dump_logs()
        return 1
    except KeyboardInterrupt as e:
        print(f"\n{prog}: interrupted ({str(e) or 'SIGINT'}), cleaning up", file=sys.stderr)
        return 130
    finally:
        procs.stop_all()
        if keep:
            print(f"work dir kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
