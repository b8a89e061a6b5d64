"""Zone keys made by BIND's own dnssec-keygen, and their DS from `skyserve dnssec ds`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .procutil import REPO_ROOT, repo_python_env

__all__ = ["ds_of", "keygen"]


def keygen(directory: Path, zone: str, algorithm: str = "ECDSAP256SHA256",
           ksk: bool = False) -> str:
    """A new key for ``zone`` in ``directory``; returns its base name (without .key)."""
    flags = ["-f", "KSK"] if ksk else []
    out = subprocess.run(["dnssec-keygen", "-q", "-K", str(directory), "-a", algorithm,
                          "-n", "ZONE", *flags, zone],
                         check=True, capture_output=True, text=True, timeout=30)
    return str(directory / out.stdout.strip())


def ds_of(zone: str, *keys: str) -> str:
    """The DS record(s) the ``skyserve dnssec ds`` command prints for ``keys``."""
    args = [a for k in keys for a in ("--key", k)]
    out = subprocess.run([sys.executable, "-m", "skyserve", "dnssec", "ds", zone, *args],
                         check=True, capture_output=True, text=True, timeout=30,
                         env=repo_python_env(), cwd=REPO_ROOT)
    return out.stdout.strip()
