"""An older commit checked out beside this checkout (``git worktree``), for the benchmarks
that run skyserve before and after a change from their own trees."""

from __future__ import annotations

import argparse
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import benchkit.servers as servers


@contextmanager
def checked_out(rev: str, where: Path) -> Iterator[Path]:
    """``rev`` checked out (detached) at ``where``, removed again afterwards."""
    subprocess.run(["git", "-C", str(servers.REPO), "worktree", "add", "--detach", "-q",
                    str(where), rev], check=True)
    try:
        yield where
    finally:
        subprocess.run(["git", "-C", str(servers.REPO), "worktree", "remove", "--force",
                        str(where)], check=False)


@contextmanager
def running_from(tree: Path) -> Iterator[None]:
    """``servers.start_skyserve`` runs from ``tree`` inside the block."""
    servers.REPO, repo = tree, servers.REPO
    try:
        yield
    finally:
        servers.REPO = repo


def absolute_interpreter(ap: argparse.ArgumentParser, python: str) -> str:
    """``--python`` as an absolute path: both trees run it from their own directory, so a
    relative one must not be; an error through ``ap`` when there is none."""
    found = shutil.which(python)
    if found is None:
        ap.error(f"--python: no interpreter at {python}")
    return str(Path(found).absolute())
