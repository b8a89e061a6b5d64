"""unbound (Debian) as a validating resolver on loopback: zones of skyserve's as stub
zones, each trusted through its DS, 0x20 (use-caps-for-id) on. For the DNSSEC tests."""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping
from pathlib import Path

import dns.exception
import dns.message
import dns.query

from .netutil import free_port
from .procutil import LoggedProcess

__all__ = ["Unbound"]

HOST = "127.0.0.1"

CONFIG = """\
server:
    interface: {host}@{port}
    port: {port}
    do-daemonize: no
    chroot: ""
    username: ""
    directory: "{dir}"
    pidfile: ""
    logfile: ""
    use-syslog: no
    verbosity: 1
    val-log-level: 2
    use-caps-for-id: yes
    do-not-query-localhost: no
    module-config: "validator iterator"
    cache-max-ttl: {max_ttl}
    cache-max-negative-ttl: {max_ttl}
    do-ip6: no
    local-zone: "ready.invalid." static
    local-data: "ready.invalid. A 127.0.0.1"
    val-permissive-mode: no
    qname-minimisation: {minimise}
{zones}
# Anything else stays on loopback too: nothing listens there.
stub-zone:
    name: "."
    stub-addr: {host}@9
"""
# unbound's own empty zones (test., 10.in-addr.arpa., ...) would hide ours.
ZONE = """\
server:
    local-zone: "{zone}" nodefault
    local-zone: "{tld}." nodefault
    trust-anchor: "{ds}"
stub-zone:
    name: "{zone}"
    stub-addr: {host}@{upstream}
"""


class Unbound(LoggedProcess):
    """``unbound -d`` resolving the zones of ``anchors`` (zone: its DS) from
    ``upstream_port``, each trusted through its DS. ``minimise``: QNAME minimisation
    (RFC 9156), on by default as in unbound; it asks A at names on the way down."""

    def __init__(self, workdir: Path, anchors: Mapping[str, str], upstream_port: int,
                 max_ttl: int = 1, minimise: bool = True) -> None:
        name = "unbound" if minimise else "unbound-nomin"
        super().__init__(workdir / f"{name}.log")
        self.port = free_port()
        self.config = workdir / f"{name}.conf"
        zones = "".join(ZONE.format(zone=zone, tld=zone.rstrip(".").rsplit(".", 1)[-1], ds=ds,
                                    host=HOST, upstream=upstream_port)
                        for zone, ds in anchors.items())
        self.config.write_text(CONFIG.format(host=HOST, port=self.port, dir=workdir,
                                             zones=zones, max_ttl=max_ttl,
                                             minimise="yes" if minimise else "no"))

    def start(self, timeout: float = 10.0) -> None:
        binary = shutil.which("unbound") or "/usr/sbin/unbound"
        self._spawn([binary, "-d", "-c", str(self.config)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:  # up once it answers anything
            if not self.running:
                raise RuntimeError(f"unbound exited:\n{self.log_tail()}")
            try:
                self.query("ready.invalid.", "A", timeout=0.5)
                return
            except (dns.exception.Timeout, OSError):
                time.sleep(0.1)
        raise RuntimeError(f"unbound did not answer in {timeout}s:\n{self.log_tail()}")

    def query(self, name: str, rdtype: str, timeout: float = 5.0) -> dns.message.Message:
        q = dns.message.make_query(name, rdtype, want_dnssec=True)
        return dns.query.udp(q, HOST, timeout=timeout, port=self.port)
