"""unbound (Debian) as a validating resolver on loopback: a zone of skyserve's as a stub
zone, trusted through its DS, 0x20 (use-caps-for-id) on. For the DNSSEC tests."""

from __future__ import annotations

import shutil
import time
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
    local-zone: "{tld}." nodefault
    local-zone: "ready.invalid." static
    local-data: "ready.invalid. A 127.0.0.1"
    trust-anchor: "{ds}"
    val-permissive-mode: no
stub-zone:
    name: "{zone}"
    stub-addr: {host}@{upstream}
# Anything else stays on loopback too: nothing listens there.
stub-zone:
    name: "."
    stub-addr: {host}@9
"""


class Unbound(LoggedProcess):
    """``unbound -d`` resolving ``zone`` from ``upstream_port``, trusting the DS ``ds``."""

    def __init__(self, workdir: Path, zone: str, ds: str, upstream_port: int,
                 max_ttl: int = 1) -> None:
        super().__init__(workdir / "unbound.log")
        self.port = free_port()
        self.config = workdir / "unbound.conf"
        tld = zone.rstrip(".").rsplit(".", 1)[-1]
        self.config.write_text(CONFIG.format(host=HOST, port=self.port, dir=workdir, tld=tld,
                                             ds=ds, zone=zone, upstream=upstream_port,
                                             max_ttl=max_ttl))

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
