"""knot, NSD and BIND's named as secondaries of skyserve on loopback, for bench-xfr.

Set up as the transfer tests' secondaries (tests/support/secondaries.py, which scripts may
not import), less what only the tests need (named's transfer debug log, NSD's IXFR store,
both cost time): each in the foreground, in its own directory, on a free port, transferring
from the primary with a TSIG key and taking its NOTIFYs; started and stopped through
``Procs``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from benchkit.net import free_port
from benchkit.procs import Procs, Server

KEY_NAME = "xfr-key"
KEY_SECRET = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="  # base64 of 32 bytes


def _knot(d: Path, port: int, zone: str, primary: int) -> list[str]:
    conf = f"""server:
    rundir: "{d}"
    listen: 127.0.0.1@{port}
log:
  - target: stderr
    any: warning
database:
    storage: "{d}"
key:
  - id: {KEY_NAME}
    algorithm: hmac-sha256
    secret: {KEY_SECRET}
remote:
  - id: primary
    address: 127.0.0.1@{primary}
    key: {KEY_NAME}
acl:
  - id: from_primary
    address: 127.0.0.1
    key: {KEY_NAME}
    action: notify
zone:
  - domain: {zone}
    master: primary
    acl: from_primary
    zonefile-sync: -1
    zonefile-load: none
    journal-content: changes
"""
    (d / "knot.conf").write_text(conf)
    return ["knotd", "-c", str(d / "knot.conf")]


def _nsd(d: Path, port: int, zone: str, primary: int, reload_timeout: int = 1) -> list[str]:
    # NSD reloads after a transfer, then waits ``reload_timeout`` s before it reloads again
    # (its default, 1 s: a change right after another waits about that long).
    conf = f"""server:
    xfrd-reload-timeout: {reload_timeout}
    ip-address: 127.0.0.1@{port}
    port: {port}
    username: ""
    chroot: ""
    zonesdir: "{d}"
    xfrdir: "{d}"
    database: ""
    pidfile: "{d}/nsd.pid"
    xfrdfile: "{d}/xfrd.state"
    zonelistfile: "{d}/zone.list"
    server-count: 1
    verbosity: 1
    rrl-ratelimit: 0
remote-control:
    control-enable: no
key:
    name: {KEY_NAME}
    algorithm: hmac-sha256
    secret: "{KEY_SECRET}"
zone:
    name: {zone}
    zonefile: "{d}/zone.db"
    request-xfr: 127.0.0.1@{primary} {KEY_NAME}
    allow-notify: 127.0.0.1 {KEY_NAME}
"""
    (d / "nsd.conf").write_text(conf)
    return ["nsd", "-d", "-c", str(d / "nsd.conf")]


def _named(d: Path, port: int, zone: str, primary: int) -> list[str]:
    conf = f"""options {{
    directory "{d}";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    pid-file "{d}/named.pid";
    session-keyfile "{d}/session.key";
    recursion no;
    notify no;
    dnssec-validation no;
    max-records-per-type 0;
    max-types-per-name 0;
}};
controls {{ }};
key "{KEY_NAME}" {{ algorithm hmac-sha256; secret "{KEY_SECRET}"; }};
zone "{zone}" {{
    type secondary;
    primaries port {primary} {{ 127.0.0.1 key "{KEY_NAME}"; }};
    file "{d}/zone.db";
    allow-notify {{ 127.0.0.1; }};
}};
"""
    (d / "named.conf").write_text(conf)
    return ["named", "-g", "-c", str(d / "named.conf")]


Config = Callable[[Path, int, str, int], list[str]]
KINDS: dict[str, Config] = {"knot": _knot, "nsd": _nsd, "named": _named}


def ports(kinds: list[str]) -> dict[str, int]:
    """A port for each secondary, known before skyserve starts (it NOTIFYs them)."""
    return {k: free_port() for k in kinds}


def start_secondary(procs: Procs, work: Path, kind: str, port: int, zone: str,
                    primary: int, nsd_reload_timeout: int = 1) -> Server:
    d = work / kind
    d.mkdir()
    cmd = (_nsd(d, port, zone, primary, nsd_reload_timeout) if kind == "nsd"
           else KINDS[kind](d, port, zone, primary))
    return procs.start(kind, cmd, d / f"{kind}.log", port)
