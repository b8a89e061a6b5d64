"""skyserve register / unregister / records against a real etcd and a running server."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import dns.rcode
import pytest

from tests.support import polling
from tests.support.etcd_server import EtcdServer
from tests.support.skyserve_proc import REPO_ROOT, SkyserveProcess

pytestmark = pytest.mark.e2e

Start = Callable[..., SkyserveProcess]
wait_for = functools.partial(polling.wait_for, step=0.05)  # polls every 50 ms


def cli(etcd: EtcdServer, prefix: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "skyserve", *args, "--etcd-endpoints", etcd.endpoint,
         "--etcd-prefix", prefix],
        capture_output=True, text=True, timeout=30, cwd=REPO_ROOT,
    )


def addresses(proc: SkyserveProcess, name: str) -> list[str]:
    reply = proc.query(name)
    return sorted(rd.to_text() for rrset in reply.answer for rd in rrset)


def test_register_and_unregister(etcd: EtcdServer, clean_prefix: str, skyserve: Start) -> None:
    proc = skyserve(["example.org."])
    assert cli(etcd, clean_prefix, "register", "web.example.org", "--host", "192.0.2.10",
               "--port", "80").returncode == 0
    assert cli(etcd, clean_prefix, "register", "web.example.org", "--host", "192.0.2.11",
               "--ttl", "30").returncode == 0
    assert wait_for(lambda: addresses(proc, "web.example.org") == ["192.0.2.10", "192.0.2.11"], 3)
    srv = proc.query("web.example.org", "SRV")
    assert any(rd.port == 80 for rrset in srv.answer for rd in rrset)
    listing = cli(etcd, clean_prefix, "records", "example.org")
    assert listing.returncode == 0 and "192.0.2.10" in listing.stdout
    # Registering the same instance again replaces it rather than adding a third record.
    cli(etcd, clean_prefix, "register", "web.example.org", "--host", "192.0.2.10", "--port", "80")
    assert len(etcd.get_prefix(clean_prefix + "/org/example/web/")) == 2
    assert cli(etcd, clean_prefix, "unregister", "web.example.org", "--host", "192.0.2.10",
               "--port", "80").returncode == 0
    assert wait_for(lambda: addresses(proc, "web.example.org") == ["192.0.2.11"], 3)
    assert cli(etcd, clean_prefix, "unregister", "web.example.org").returncode == 0
    assert wait_for(lambda: proc.query("web.example.org").rcode() == dns.rcode.NXDOMAIN, 3)


def test_unregister_leaves_deeper_records(etcd: EtcdServer, clean_prefix: str) -> None:
    etcd.put(clean_prefix + "/org/example/app/api/x", '{"host":"192.0.2.30"}')
    cli(etcd, clean_prefix, "register", "app.example.org", "--host", "192.0.2.31")
    cli(etcd, clean_prefix, "unregister", "app.example.org")
    assert list(etcd.get_prefix(clean_prefix + "/org/example/app/")) == [
        clean_prefix + "/org/example/app/api/x"
    ]


def test_bad_input_writes_nothing(etcd: EtcdServer, clean_prefix: str) -> None:
    for args in (["bad name.example.org", "--host", "192.0.2.1"],
                 ["x.example.org", "--host", "not a host"],
                 ["x.example.org", "--host", "192.0.2.1", "--port", "70000"],
                 ["x.example.org", "--host", "192.0.2.1", "--ttl", "-5"],
                 ["x.example.org", "--host", "192.0.2.1", "--id", "a/b"]):
        result = cli(etcd, clean_prefix, "register", *args)
        assert result.returncode == 2, args
        assert "error" in result.stderr
    assert etcd.get_prefix(clean_prefix + "/") == {}


def test_a_leased_record_outlives_nothing(etcd: EtcdServer, clean_prefix: str,
                                          skyserve: Start) -> None:
    proc = skyserve(["example.org."])
    holder = subprocess.Popen(
        [sys.executable, "-m", "skyserve", "register", "lease.example.org", "--host",
         "192.0.2.99", "--lease", "2", "--etcd-endpoints", etcd.endpoint,
         "--etcd-prefix", clean_prefix],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT,
    )
    try:
        assert wait_for(lambda: addresses(proc, "lease.example.org") == ["192.0.2.99"], 5)
        assert proc.query("lease.example.org").answer[0].ttl <= 2  # no longer than the lease
        time.sleep(3)  # longer than the lease: kept alive by the running command
        assert addresses(proc, "lease.example.org") == ["192.0.2.99"]
        os.kill(holder.pid, signal.SIGKILL)  # a crash: nobody revokes the lease
        holder.wait(5)
        gone = lambda: proc.query("lease.example.org").rcode() == dns.rcode.NXDOMAIN  # noqa: E731
        assert not gone()
        assert wait_for(gone, 6)  # etcd expires the lease within its TTL
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(5)


def test_a_leased_record_is_removed_on_clean_exit(etcd: EtcdServer, clean_prefix: str) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-m", "skyserve", "register", "bye.example.org", "--host", "192.0.2.5",
         "--lease", "30", "--etcd-endpoints", etcd.endpoint, "--etcd-prefix", clean_prefix],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT,
    )
    assert wait_for(lambda: bool(etcd.get_prefix(clean_prefix + "/org/example/bye/")), 10)
    holder.send_signal(signal.SIGTERM)
    assert holder.wait(10) == 0
    assert etcd.get_prefix(clean_prefix + "/org/example/bye/") == {}
