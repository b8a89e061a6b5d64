"""Real resolvers in front of skyserve, not only dnspython: unbound as a caching resolver
with stub zones, and glibc's stub resolver (getent) with a pod's resolv.conf."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import dns.rcode
import dns.rdatatype
import pytest

from kube2etcd.records import (
    CLUSTER_IP,
    HEADLESS,
    Domain,
    Endpoint,
    EndpointGroup,
    EndpointSet,
    Port,
    Service,
    service_records,
    values,
)
from tests.support.dns_upstream import DnsUpstream
from tests.support.dnsutil import key
from tests.support.etcd_server import EtcdServer
from tests.support.netutil import free_loopback_53
from tests.support.skyserve_proc import SkyserveProcess
from tests.support.unbound_server import UnboundServer, find_unbound

pytestmark = pytest.mark.e2e

Start = Callable[..., SkyserveProcess]
NEGATIVE_TTL = 3  # --min-ttl: the SOA's TTL and MINIMUM


def asked(proc: SkyserveProcess, name: str) -> int:
    """How many queries for ``name`` skyserve logged (--log-queries all)."""
    return sum(f" {name}. " in line or f'"{name}."' in line
               for line in proc.log_text().splitlines())


def texts(reply: dns.message.Message, rdtype: str) -> list[str]:
    want = dns.rdatatype.from_text(rdtype)
    return sorted(rd.to_text() for r in reply.answer if r.rdtype == want for rd in r)


def test_unbound_resolves_through_skyserve_and_caches_denials(
    etcd: EtcdServer, clean_prefix: str, skyserve: Start,
    dns_upstream: Callable[..., DnsUpstream], tmp_path: Path,
) -> None:
    binary = find_unbound()
    if binary is None:
        pytest.skip("unbound not installed (apt-get install unbound)")
    up = dns_upstream()
    up.add("www.example.com", "A", "192.0.2.80")
    up.add("in.example.com", "CNAME", "web.skydns.test.")
    for name, value in {"web.skydns.test": {"host": "10.0.0.1"},
                        "x1._http._tcp.api.skydns.test": {"host": "10.0.0.2", "port": 8080},
                        "alias.skydns.test": {"host": "web.skydns.test"},
                        "alias2.skydns.test": {"host": "host2.skydns.test"},
                        "host2.skydns.test": {"host": "10.0.0.3"},
                        "out.skydns.test": {"host": "www.example.com"}}.items():
        etcd.put(key(clean_prefix, name), json.dumps(value))
    proc = skyserve(["skydns.test."], ["--min-ttl", str(NEGATIVE_TTL), "--log-queries", "all"])
    with UnboundServer(binary, {"skydns.test.": proc.dns_port, "example.com.": up.port},
                       tmp_path / "unbound") as unbound:
        srv = unbound.query("_http._tcp.api.skydns.test", "SRV")
        assert texts(srv, "SRV") == ["10 100 8080 x1._http._tcp.api.skydns.test."]
        assert texts(unbound.query("alias.skydns.test"), "A") == ["10.0.0.1"]
        out = unbound.query("out.skydns.test")  # a chain out of our zones
        assert texts(out, "CNAME") == ["www.example.com."] and texts(out, "A") == ["192.0.2.80"]
        into = unbound.query("in.example.com")  # and one into them
        assert texts(into, "CNAME") == ["web.skydns.test."] and texts(into, "A") == ["10.0.0.1"]
        # A denial is cached for the SOA's negative TTL, then asked again; also after a
        # CNAME (alias -> web has no TXT), whose NODATA used to come without an SOA.
        for name, rcode, cnames in (("nx.skydns.test", dns.rcode.NXDOMAIN, []),
                                    ("web.skydns.test", dns.rcode.NOERROR, []),
                                    ("alias2.skydns.test", dns.rcode.NOERROR,
                                     ["host2.skydns.test."])):
            rdtype = "TXT"
            first = unbound.query(name, rdtype)
            assert first.rcode() == rcode and texts(first, "CNAME") == cnames
            assert not texts(first, "TXT")
            seen = asked(proc, name) + asked(proc, "host2.skydns.test")
            assert seen >= 1
            again = unbound.query(name, rdtype)
            assert again.rcode() == rcode, name
            assert asked(proc, name) + asked(proc, "host2.skydns.test") == seen, name
        time.sleep(NEGATIVE_TTL + 1.5)
        before = asked(proc, "nx.skydns.test")
        assert unbound.query("nx.skydns.test", "TXT").rcode() == dns.rcode.NXDOMAIN
        assert asked(proc, "nx.skydns.test") > before, "cached past the negative TTL"


# -- glibc ------------------------------------------------------------------------------

DOMAIN = Domain(("cluster", "local"))


def cluster_records() -> dict[str, str]:
    http = Port("http", 80, "TCP")
    kubernetes = Service("default", "kubernetes", CLUSTER_IP, ("10.96.0.1",),
                         ports=(Port("https", 443, "TCP"),))
    web = Service("default", "web", CLUSTER_IP, ("10.96.0.10",), ports=(http,))
    db = Service("default", "db", HEADLESS, ports=(http,))
    db_eps = EndpointSet("default", "db-1", "db", (EndpointGroup(
        (Endpoint(("10.0.1.1",), hostname="db-0"), Endpoint(("10.0.1.2",))), (http,)),))
    records = {**service_records(DOMAIN, kubernetes), **service_records(DOMAIN, web),
               **service_records(DOMAIN, db, [db_eps])}
    return values(DOMAIN, records)


def getent(resolv: Path, nsswitch: Path, name: str) -> tuple[int, str, float]:
    """``getent ahosts NAME`` in a private mount namespace whose /etc/resolv.conf and
    /etc/nsswitch.conf are ours (the machine's resolver is never used)."""
    script = (f"mount --bind {resolv} /etc/resolv.conf && "
              f"mount --bind {nsswitch} /etc/nsswitch.conf && exec getent ahosts {name}")
    t0 = time.monotonic()
    done = subprocess.run(["unshare", "--mount", "sh", "-c", script], capture_output=True,
                          text=True, timeout=30, check=False)
    return done.returncode, done.stdout + done.stderr, time.monotonic() - t0


def test_glibc_resolves_a_pods_names_through_the_search_list(
    etcd: EtcdServer, clean_prefix: str, skyserve: Start,
    dns_upstream: Callable[..., DnsUpstream], tmp_path: Path,
) -> None:
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("getent"):
        pytest.skip("needs root, unshare and getent (a private mount namespace)")
    [address] = free_loopback_53(1, first=180) or pytest.skip("no free 127.0.0.x:53")
    for k, v in cluster_records().items():
        etcd.put(clean_prefix + k.removeprefix("/skydns"), v)
    up = dns_upstream()
    proc = skyserve(["cluster.local."], ["--cluster-zone", "cluster.local.",
                                         "--dns-addr", f"{address}:53", "--upstream", up.address])
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("search default.svc.cluster.local svc.cluster.local cluster.local\n"
                      f"nameserver {address}\noptions ndots:5\n")
    nsswitch = tmp_path / "nsswitch.conf"
    nsswitch.write_text("hosts: dns\n")
    for name, want in (("kubernetes.default", "10.96.0.1"), ("web", "10.96.0.10"),
                       ("db", "10.0.1.1"), ("db-0.db", "10.0.1.1")):
        rc, out, _ = getent(resolv, nsswitch, name)
        assert rc == 0 and want in out, (name, out, proc.log_tail())
    rc, out, took = getent(resolv, nsswitch, "nosuch")
    assert rc != 0, out
    assert took < 2.0, f"{took:.2f}s: a search step was not answered at once"
    for suffix in ("default.svc.cluster.local", "svc.cluster.local", "cluster.local"):
        assert up.count(f"nosuch.{suffix}", None) == 0  # answered from memory, never forwarded
