"""Real secondaries (knot, NSD, BIND's named) of a primary on loopback, for transfer tests.

Each runs in the foreground from a temporary directory with its own config, on a free
loopback port, is stopped by PID, and logs to a file. ``Key`` is the TSIG key they share
with the primary (every transfer and NOTIFY is signed with it). ``refreshed_by`` says,
from the secondary's own account, whether it left a serial by an IXFR or by a full zone.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rrset
import dns.tsigkeyring

from tests.support.netutil import free_port
from tests.support.procutil import LoggedProcess

PACKAGES = {"knotd": "knot", "nsd": "nsd", "named": "bind9"}
BINARIES = {"knotd": "/usr/sbin/knotd", "nsd": "/usr/sbin/nsd", "named": "/usr/sbin/named"}


@dataclass(frozen=True)
class Key:
    name: str
    secret: str  # base64


def ensure_installed(binary: str) -> bool:
    """Install the Debian package of a secondary if it is missing (idempotent)."""
    if Path(BINARIES[binary]).exists():
        return True
    if shutil.which("apt-get") is None:
        return False
    subprocess.run(["apt-get", "install", "-y", "-qq", PACKAGES[binary]], check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env={"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/bin"})
    return Path(BINARIES[binary]).exists()


class Secondary(LoggedProcess):
    binary = ""

    def __init__(self, zone: str, primary_port: int, key: Key) -> None:
        # Short paths: knot's control socket must fit in a sun_path.
        self.dir = Path(tempfile.mkdtemp(prefix=f"x{self.binary[:2]}-", dir="/tmp"))
        self.zone = zone
        self.primary_port = primary_port
        self.key = key
        self.port = free_port()
        super().__init__(self.dir / "log")

    def argv(self) -> list[str]:
        raise NotImplementedError

    def write_config(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self.write_config()
        self._spawn(self.argv(), cwd=self.dir)

    def query(self, name: str, rdtype: str) -> dns.message.Message | None:
        q = dns.message.make_query(name, rdtype)
        try:
            return dns.query.udp(q, "127.0.0.1", port=self.port, timeout=1.0)
        except (dns.exception.Timeout, OSError):
            return None

    def serial(self) -> int | None:
        reply = self.query(self.zone, "SOA")
        if reply is None or reply.rcode() != dns.rcode.NOERROR or not reply.answer:
            return None
        return int(reply.answer[0][0].serial)

    def wait_serial(self, serial: int, timeout: float = 20.0) -> float:
        """Seconds until the secondary serves ``serial``; AssertionError with its log if not."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if self.serial() == serial:
                return time.monotonic() - start
            time.sleep(0.02)
        raise AssertionError(f"{self.binary} still at serial {self.serial()}, not {serial}:\n"
                             f"{self.log_tail(40)}")

    def refreshed_by(self, serial: int) -> str | None:
        """How the secondary says it moved on from ``serial``: "IXFR", "AXFR" (a full zone,
        also in answer to its IXFR), or None when it shows no transfer from there."""
        raise NotImplementedError

    def stop(self, timeout: float = 10.0) -> int | None:
        code = super().stop(timeout)
        shutil.rmtree(self.dir, ignore_errors=True)
        return code


class Knot(Secondary):
    """knot 3.2 has no ``ixfr-benevolent`` (3.3 added it, off by default): it applies an
    IXFR only if every removed record is there and no added one is."""

    binary = "knotd"

    def argv(self) -> list[str]:
        return [BINARIES["knotd"], "-c", str(self.dir / "knot.conf")]

    def write_config(self) -> None:
        (self.dir / "knot.conf").write_text(f"""
server:
    rundir: "{self.dir}"
    listen: 127.0.0.1@{self.port}
log:
  - target: stderr
    any: info
database:
    storage: "{self.dir}"
key:
  - id: {self.key.name}
    algorithm: hmac-sha256
    secret: {self.key.secret}
remote:
  - id: primary
    address: 127.0.0.1@{self.primary_port}
    key: {self.key.name}
acl:
  - id: from_primary
    address: 127.0.0.1
    key: {self.key.name}
    action: notify
zone:
  - domain: {self.zone}
    master: primary
    acl: from_primary
    zonefile-sync: -1
    zonefile-load: none
    journal-content: changes
""")

    def refreshed_by(self, serial: int) -> str | None:
        # "[zone] IXFR, incoming, remote ..., finished, ..." (an AXFR-style IXFR is logged
        # as an AXFR), then "[zone] refresh, remote ..., zone updated, ..., serial A -> B".
        kind = None
        for line in self.log_text().splitlines():
            if found := re.search(r"\] (AXFR|IXFR), incoming, remote \S+, finished", line):
                kind = found[1]
            elif "zone updated" in line and f" serial {serial} -> " in line:
                return kind
        return None


class Nsd(Secondary):
    binary = "nsd"

    def argv(self) -> list[str]:
        return [BINARIES["nsd"], "-d", "-c", str(self.dir / "nsd.conf")]

    def write_config(self) -> None:
        (self.dir / "nsd.conf").write_text(f"""
server:
    ip-address: 127.0.0.1@{self.port}
    port: {self.port}
    username: ""
    chroot: ""
    zonesdir: "{self.dir}"
    xfrdir: "{self.dir}"
    database: ""
    pidfile: "{self.dir}/nsd.pid"
    xfrdfile: "{self.dir}/xfrd.state"
    zonelistfile: "{self.dir}/zone.list"
    server-count: 1
    verbosity: 2
    logfile: "{self.dir}/log"
remote-control:
    control-enable: no
key:
    name: {self.key.name}
    algorithm: hmac-sha256
    secret: "{self.key.secret}"
zone:
    name: {self.zone}
    zonefile: "{self.dir}/zone.db"
    request-xfr: 127.0.0.1@{self.primary_port} {self.key.name}
    allow-notify: 127.0.0.1 {self.key.name}
    provide-xfr: 127.0.0.1 {self.key.name}
    store-ixfr: yes
""")

    def refreshed_by(self, serial: int) -> str | None:
        """NSD 4.6 logs no transfer type, but with ``store-ixfr`` it keeps every IXFR it
        applies, and drops them all on an AXFR: ask it for an IXFR from ``serial``."""
        query = dns.message.make_query(self.zone, "IXFR")
        query.authority.append(dns.rrset.from_text(self.zone, 0, "IN", "SOA",
                                                   f". . {serial} 0 0 0 0"))
        keyring = dns.tsigkeyring.from_text({self.key.name: ("hmac-sha256", self.key.secret)})
        query.use_tsig(keyring, keyname=self.key.name, algorithm="hmac-sha256")
        reply = dns.query.tcp(query, "127.0.0.1", port=self.port, timeout=5,
                              one_rr_per_rrset=True)
        # Incremental: the new SOA, then the old one opening the first difference.
        kinds = [rrset.rdtype for rrset in reply.answer[:2]]
        if kinds == [dns.rdatatype.SOA, dns.rdatatype.SOA]:
            return "IXFR" if reply.answer[1][0].serial == serial else None
        return "AXFR"


class Bind(Secondary):
    binary = "named"

    def argv(self) -> list[str]:
        # Foreground with debug level 3 (not -g, which ignores the logging statement):
        # named logs whether a transfer was incremental only at that level.
        return [BINARIES["named"], "-f", "-d", "3", "-c", str(self.dir / "named.conf")]

    def write_config(self) -> None:
        (self.dir / "named.conf").write_text(f"""
options {{
    directory "{self.dir}";
    listen-on port {self.port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    pid-file "{self.dir}/named.pid";
    session-keyfile "{self.dir}/session.key";
    recursion no;
    notify no;
    dnssec-validation no;
    max-records-per-type 0;
    max-types-per-name 0;
}};
controls {{ }};
logging {{
    channel info {{ stderr; severity info; print-time yes; }};
    channel xfer {{ stderr; severity debug 3; print-time yes; }};
    category default {{ info; }};
    category xfer-in {{ xfer; }};
}};
key "{self.key.name}" {{ algorithm hmac-sha256; secret "{self.key.secret}"; }};
zone "{self.zone}" {{
    type secondary;
    primaries port {self.primary_port} {{ 127.0.0.1 key "{self.key.name}"; }};
    file "{self.dir}/zone.db";
    allow-notify {{ 127.0.0.1; }};
}};
""")

    def refreshed_by(self, serial: int) -> str | None:
        # "transfer of 'zone/IN' from ...: requesting IXFR for serial N", then "...: got
        # incremental response" (or "nonincremental": the whole zone).
        asked = False
        for line in self.log_text().splitlines():
            if f"requesting IXFR for serial {serial}" in line:
                asked = True
            elif asked and (found := re.search(r"got (non)?incremental response", line)):
                return "AXFR" if found[1] else "IXFR"
        return None


KINDS: dict[str, type[Secondary]] = {"knot": Knot, "nsd": Nsd, "bind": Bind}
