"""skyserve register / unregister / records against a real etcd and a running server."""

from __future__ import annotations

import functools
import json
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


def test_unregister_removes_only_what_register_wrote(etcd: EtcdServer, clean_prefix: str,
                                                     skyserve: Start) -> None:
    """Other writers (etcdctl, kube2etcd, external-dns) put records under the same names."""
    proc = skyserve(["example.org."])
    web = clean_prefix + "/org/example/web"
    etcd.put(web + "/x1", '{"host":"192.0.2.1"}')
    etcd.put(web, '{"host":"192.0.2.2"}')  # the name's own key, as SkyDNS allows
    assert cli(etcd, clean_prefix, "register", "web.example.org", "--host", "192.0.2.3",
               "--port", "80").returncode == 0
    [ours] = [k for k in etcd.get_prefix(web + "/") if k != web + "/x1"]
    result = cli(etcd, clean_prefix, "unregister", "web.example.org")
    assert result.returncode == 0, result.stderr
    assert f"removed {ours}" in result.stdout and "192.0.2.3" in result.stdout
    assert "left alone: 1 record(s)" in result.stdout
    assert etcd.get(web + "/x1") == b'{"host":"192.0.2.1"}'
    assert etcd.get(web) == b'{"host":"192.0.2.2"}'
    assert wait_for(lambda: addresses(proc, "web.example.org") == ["192.0.2.1", "192.0.2.2"], 3)
    # Nothing of its own is left: say so, and fail.
    for args in ([], ["--id", "x1"], ["--host", "192.0.2.3", "--port", "80"]):
        again = cli(etcd, clean_prefix, "unregister", "web.example.org", *args)
        assert again.returncode == 1, args
        assert "nothing to remove: no record skyserve register wrote" in again.stderr, args
    assert etcd.get(web + "/x1") == b'{"host":"192.0.2.1"}'


def test_register_never_overwrites_another_writers_key(etcd: EtcdServer,
                                                       clean_prefix: str) -> None:
    key = clean_prefix + "/org/example/web/x1"
    etcd.put(key, '{"host":"192.0.2.1"}')
    for lease in ([], ["--lease", "5"]):
        result = cli(etcd, clean_prefix, "register", "web.example.org", "--host", "192.0.2.9",
                     "--id", "x1", *lease)
        assert result.returncode == 1 and "did not write" in result.stderr, result.stderr
        assert etcd.get(key) == b'{"host":"192.0.2.1"}'


def test_a_value_register_wrote_carries_its_marker(etcd: EtcdServer, clean_prefix: str) -> None:
    cli(etcd, clean_prefix, "register", "m.example.org", "--host", "192.0.2.4", "--id", "a")
    value = etcd.get(clean_prefix + "/org/example/m/a")
    assert value is not None and json.loads(value)["skyserve"] == "register"


@pytest.mark.parametrize("host", ["10.0.0.300", "999.1.1.1", "10.0.0", "2001:db8::g"])
def test_an_invalid_address_is_refused_not_taken_for_a_name(etcd: EtcdServer,
                                                             clean_prefix: str,
                                                             host: str) -> None:
    result = cli(etcd, clean_prefix, "register", "x.example.org", "--host", host,
                 "--port", "80")
    assert result.returncode == 2
    assert f"--host {host!r} looks like an IPv" in result.stderr
    assert "is not a valid one" in result.stderr
    assert etcd.get_prefix(clean_prefix + "/") == {}


def test_records_flags_an_invalid_address_and_the_server_skips_it(
    etcd: EtcdServer, clean_prefix: str, skyserve: Start
) -> None:
    etcd.put(clean_prefix + "/org/example/bad/x", '{"host":"10.0.0.300","port":80}')
    listing = cli(etcd, clean_prefix, "records", "example.org")
    assert "# INVALID: host '10.0.0.300' looks like an IPv4 address" in listing.stdout
    proc = skyserve(["example.org."])
    for rdtype in ("A", "CNAME", "SRV"):
        assert proc.query("bad.example.org", rdtype).answer == [], rdtype


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
