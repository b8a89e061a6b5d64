"""Signed answers are re-signed before their signatures expire: skyserve runs under
libfaketime with a clock the test sets, and the clock is moved past the signing week.

Both clocks are faked (libfaketime's default), so they move together as time passing
does: the answer cache keeps a signed answer until a monotonic deadline derived from the
wall clock. With FAKETIME_DONT_FAKE_MONOTONIC=1 (a wall-clock step alone) this test fails:
the old week's answer stays cached until that deadline (docs/dnssec.md).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import dns.dnssec
import dns.message
import dns.name
import dns.rdatatype
import dns.rrset
import pytest

from tests.support.dnssec_keys import keygen
from tests.support.dnsutil import key
from tests.support.etcd_server import EtcdServer
from tests.support.skyserve_proc import SkyserveProcess

pytestmark = pytest.mark.e2e

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
ZONE = "skydns.test."
WEEK = 7 * 86400
START = 2900 * WEEK  # a signing week's start (weeks count from the epoch): 2025-07-31
# Mid-week, then an hour into the next week: before the first signatures' expiry.
BEFORE, AFTER = START + 3 * 86400, START + WEEK + 3600
QUERIES = [("x1.web.skydns.test.", "A"),  # a positive answer
           ("x1.web.skydns.test.", "TXT")]  # a compact denial (NSEC)


class Clock:
    """The time libfaketime gives skyserve, read from a file at every clock call."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def set(self, when: int) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(when))
        self.path.write_text(f"@{stamp}\n")

    def env(self) -> dict[str, str]:
        return {**os.environ, "LD_PRELOAD": str(LIBFAKETIME), "TZ": "UTC",
                "FAKETIME_TIMESTAMP_FILE": str(self.path), "FAKETIME_NO_CACHE": "1"}


@pytest.fixture
def faked(etcd: EtcdServer, clean_prefix: str,
          tmp_path: Path) -> Iterator[tuple[SkyserveProcess, Clock]]:
    if not LIBFAKETIME.exists() or shutil.which("dnssec-keygen") is None:
        pytest.skip("needs libfaketime (Debian faketime) and dnssec-keygen")
    etcd.put(key(clean_prefix, "x1.web.skydns.test"), '{"host":"10.0.0.1"}')
    clock = Clock(tmp_path / "faketime")
    clock.set(BEFORE)
    proc = SkyserveProcess(etcd.endpoint, [ZONE], prefix=clean_prefix, log_dir=tmp_path,
                           extra_args=["--dnssec", f"{ZONE}={keygen(tmp_path, ZONE)}"],
                           env=clock.env())
    with proc:
        yield proc, clock


def signed(proc: SkyserveProcess, name: str, rdtype: str
           ) -> tuple[dns.rrset.RRset, dns.rrset.RRset]:
    """The last RRset answering (or, for NODATA, denying: the NSEC after the SOA) the
    query, and its RRSIG."""
    reply = proc.query(name, rdtype, want_dnssec=True)
    records = reply.answer or reply.authority
    data = next(r for r in reversed(records) if r.rdtype != dns.rdatatype.RRSIG)
    sig = next(r for r in records
               if r.rdtype == dns.rdatatype.RRSIG and r.covers == data.rdtype)
    return data, sig


def dnskeys(proc: SkyserveProcess) -> dict[dns.name.Name, dns.rrset.RRset]:
    reply = proc.query(ZONE, "DNSKEY", want_dnssec=True)
    rrset = reply.find_rrset(reply.answer, dns.name.from_text(ZONE), 1, dns.rdatatype.DNSKEY)
    return {rrset.name: rrset}


def test_answers_are_resigned_before_expiry(faked: tuple[SkyserveProcess, Clock]) -> None:
    proc, clock = faked
    before = {q: signed(proc, *q) for q in QUERIES}
    assert [data.rdtype for data, _ in before.values()] == [dns.rdatatype.A,
                                                            dns.rdatatype.NSEC]
    for data, sig in before.values():
        assert (sig[0].inception, sig[0].expiration) == (START - WEEK, START + 2 * WEEK)
        dns.dnssec.validate(data, sig, dnskeys(proc), now=BEFORE)
    assert {q: signed(proc, *q) for q in QUERIES} == before  # served from the cache

    clock.set(AFTER)
    for query, (_, old) in before.items():
        data, sig = signed(proc, *query)
        # The old signature was still valid at this moment: re-signed before expiry.
        assert old[0].expiration > AFTER, query
        assert (sig[0].inception, sig[0].expiration) == (START, START + 3 * WEEK), query
        dns.dnssec.validate(data, sig, dnskeys(proc), now=AFTER)
