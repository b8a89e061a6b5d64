"""Debian's knotd serving zone files on a free loopback port: the standards-exact reference
the differential tests compare skyserve with."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

import dns.exception
import dns.message
import dns.query

from tests.support.dnsutil import wait_answering
from tests.support.netutil import free_port
from tests.support.procutil import LoggedProcess

__all__ = ["KnotServer", "find_knotd"]

HOST = "127.0.0.1"


def find_knotd() -> str | None:
    return shutil.which("knotd") or next(
        (p for p in ("/usr/sbin/knotd",) if Path(p).exists()), None)


class KnotServer(LoggedProcess):
    """``knotd`` with one zone file per zone (``zones``: origin -> zone-file text).

    Everything lives in a temporary directory: config, zone files, journal, run dir. It
    runs as the current user, with no control socket in use and nothing signed."""

    def __init__(self, binary: str, zones: Mapping[str, str], workdir: Path | None = None
                 ) -> None:
        self.binary = binary
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="knot-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        super().__init__(self.dir / "knotd.log")
        zone_conf = []
        for origin, text in zones.items():
            name = origin.rstrip(".") or "root"
            (self.dir / f"{name}.zone").write_text(text)
            zone_conf.append(f"  - domain: {origin}\n    file: {self.dir}/{name}.zone\n")
        (self.dir / "knot.conf").write_text(
            "server:\n"
            f"    rundir: {self.dir}\n"
            f"    listen: {HOST}@{self.port}\n"
            "database:\n"
            f"    storage: {self.dir}\n"
            "log:\n  - target: stderr\n    any: info\n"
            "template:\n  - id: default\n    semantic-checks: off\n"
            "zone:\n" + "".join(zone_conf))

    def start(self, timeout: float = 10.0) -> KnotServer:
        conf = str(self.dir / "knot.conf")
        self._spawn([self.binary, "-c", conf], header=f"=== knotd -c {conf}\n")
        probe = dns.message.make_query(".", "SOA")
        wait_answering(self, self.port, probe, "knotd", timeout)
        return self

    def __enter__(self) -> KnotServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
