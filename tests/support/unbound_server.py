"""Debian's unbound as a caching resolver on a free loopback port, with stub zones pointing
at servers of the test (skyserve, a DnsUpstream): a real resolver in front of skyserve."""

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

__all__ = ["UnboundServer", "find_unbound"]

HOST = "127.0.0.1"


def find_unbound() -> str | None:
    return shutil.which("unbound") or next(
        (p for p in ("/usr/sbin/unbound",) if Path(p).exists()), None)


class UnboundServer(LoggedProcess):
    """``unbound -d`` with a temporary config: ``stubs`` maps a zone to the port of its
    server on 127.0.0.1. No remote control, no chroot, no user change, no DNSSEC (only
    the iterator module), no QNAME minimisation, and ``test.`` freed from its default
    local zone. It only ever talks to 127.0.0.1."""

    def __init__(self, binary: str, stubs: Mapping[str, int], workdir: Path | None = None
                 ) -> None:
        self.binary = binary
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="unbound-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        super().__init__(self.dir / "unbound.log")
        stub_conf = "".join(f'stub-zone:\n    name: "{zone}"\n    stub-addr: {HOST}@{port}\n'
                            for zone, port in stubs.items())
        (self.dir / "unbound.conf").write_text(
            "server:\n"
            f"    interface: {HOST}\n"
            f"    port: {self.port}\n"
            "    do-ip6: no\n"
            "    do-daemonize: no\n"
            '    username: ""\n'
            '    chroot: ""\n'
            f'    directory: "{self.dir}"\n'
            '    pidfile: ""\n'
            "    use-syslog: no\n"
            "    verbosity: 1\n"
            "    access-control: 127.0.0.0/8 allow\n"
            "    do-not-query-localhost: no\n"
            "    qname-minimisation: no\n"
            '    module-config: "iterator"\n'
            '    local-zone: "test." nodefault\n'
            "remote-control:\n"
            "    control-enable: no\n" + stub_conf)

    def start(self, timeout: float = 10.0) -> UnboundServer:
        conf = str(self.dir / "unbound.conf")
        self._spawn([self.binary, "-d", "-c", conf], header=f"=== unbound -d -c {conf}\n")
        probe = dns.message.make_query("localhost.", "A")  # answered locally
        wait_answering(self, self.port, probe, "unbound", timeout)
        return self

    def query(self, name: str, rdtype: str = "A") -> dns.message.Message:
        q = dns.message.make_query(name, rdtype)
        return dns.query.udp(q, HOST, port=self.port, timeout=3)

    def __enter__(self) -> UnboundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
