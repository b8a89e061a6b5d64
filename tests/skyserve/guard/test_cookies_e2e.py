"""DNS cookies end to end: dig against skyserve, and interoperation with BIND's named
sharing the secret (RFC 9018: either server accepts the other's server cookies)."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dns.edns
import dns.message
import dns.query
import dns.rcode
import pytest

from tests.support.dnsutil import key
from tests.support.etcd_server import EtcdServer
from tests.support.netutil import free_port
from tests.support.skyserve_proc import SkyserveProcess

pytestmark = pytest.mark.e2e

Start = Callable[..., SkyserveProcess]
SECRET = "00112233445566778899aabbccddeeff"
CLIENT = bytes.fromhex("0102030405060708")


def dig(port: int, *args: str) -> str:
    out = subprocess.run(["dig", "@127.0.0.1", "-p", str(port), "+tries=1", "+time=2", *args],
                         capture_output=True, text=True, timeout=10)
    return out.stdout


@pytest.fixture
def served(etcd: EtcdServer, clean_prefix: str, skyserve: Start,
           tmp_path: Path) -> Callable[..., SkyserveProcess]:
    etcd.put(key(clean_prefix, "www.skydns.test"), '{"host":"10.0.0.1"}')
    secret = tmp_path / "cookie-secret"
    secret.write_text(SECRET + "\n")

    def start(*args: str) -> SkyserveProcess:
        return skyserve(["skydns.test."], ["--cookie-secret", str(secret), *args])

    return start


def test_dig_cookie_twice_shows_the_server_cookie_accepted(
        served: Callable[..., SkyserveProcess]) -> None:
    proc = served()
    first = dig(proc.dns_port, "+cookie", "www.skydns.test")
    cookie = re.search(r"; COOKIE: ([0-9a-f]{48}) \(good\)", first)
    assert cookie, first
    second = dig(proc.dns_port, f"+cookie={cookie.group(1)}", "www.skydns.test")
    assert re.search(r"; COOKIE: [0-9a-f]{48} \(good\)", second), second
    assert "status: NOERROR" in second and "10.0.0.1" in second
    assert proc.metric("skyserve_dns_cookies_total", result="valid") == 1


def test_a_3_byte_cookie_is_formerr(served: Callable[..., SkyserveProcess]) -> None:
    proc = served()
    reply = dns.query.udp(query(bytes.fromhex("abcdef")), "127.0.0.1", port=proc.dns_port,
                          timeout=2)
    assert reply.rcode() == dns.rcode.FORMERR


def query(cookie: bytes, name: str = "www.skydns.test") -> dns.message.Message:
    return dns.message.make_query(name, "A", use_edns=0,
                                  options=[dns.edns.GenericOption(dns.edns.COOKIE, cookie)])


def cookie_of(reply: dns.message.Message) -> bytes:
    [found] = [o.to_wire() for o in reply.options if o.otype == dns.edns.COOKIE]
    return found


@pytest.fixture
def named(tmp_path: Path) -> Iterator[int]:
    """BIND's named on a free loopback port, with our secret and cookies required."""
    if shutil.which("named") is None:
        pytest.skip("named (Debian bind9) is not installed")
    port = free_port()
    (tmp_path / "interop.zone").write_text(
        "$TTL 300\n@ IN SOA ns.interop.test. h.interop.test. 1 3600 600 86400 300\n"
        "@ IN NS ns.interop.test.\nns IN A 127.0.0.1\nwww IN A 10.9.9.9\n")
    conf = tmp_path / "named.conf"
    conf.write_text(f"""options {{
  directory "{tmp_path}"; pid-file "{tmp_path}/named.pid";
  session-keyfile "{tmp_path}/session.key";
  listen-on port {port} {{ 127.0.0.1; }}; listen-on-v6 {{ none; }}; recursion no;
  cookie-algorithm siphash24; cookie-secret "{SECRET}"; require-server-cookie yes;
}};
zone "interop.test" {{ type primary; file "{tmp_path}/interop.zone"; }};
""")
    with open(tmp_path / "named.log", "wb") as log:
        proc = subprocess.Popen(["named", "-g", "-c", str(conf)], stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while "running" not in (tmp_path / "named.log").read_text():
            assert proc.poll() is None and time.monotonic() < deadline, \
                (tmp_path / "named.log").read_text()
            time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def test_named_and_skyserve_accept_each_others_server_cookies(
        served: Callable[..., SkyserveProcess], named: int) -> None:
    proc = served("--cookie-require", "true")
    # named's server cookie, presented to skyserve: accepted, so no BADCOOKIE.
    from_named = dns.query.udp(query(CLIENT, "www.interop.test"), "127.0.0.1", port=named,
                               timeout=2)
    assert from_named.rcode() == dns.rcode.BADCOOKIE  # named requires one too
    reply = dns.query.udp(query(cookie_of(from_named)), "127.0.0.1", port=proc.dns_port,
                          timeout=2)
    assert reply.rcode() == dns.rcode.NOERROR and reply.answer
    # skyserve's server cookie, presented to named: accepted.
    from_us = dns.query.udp(query(CLIENT), "127.0.0.1", port=proc.dns_port, timeout=2)
    assert from_us.rcode() == dns.rcode.BADCOOKIE
    reply = dns.query.udp(query(cookie_of(from_us), "www.interop.test"), "127.0.0.1",
                          port=named, timeout=2)
    assert reply.rcode() == dns.rcode.NOERROR and reply.answer
    # And a server cookie made with another secret is not accepted by skyserve.
    forged = CLIENT + bytes.fromhex("01000000") + cookie_of(from_us)[12:16] + bytes(8)
    reply = dns.query.udp(query(forged), "127.0.0.1", port=proc.dns_port, timeout=2)
    assert reply.rcode() == dns.rcode.BADCOOKIE
