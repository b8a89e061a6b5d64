"""Key files in dnssec-keygen's format, read with clear errors; DO=0 answers unchanged by
signing, and signed answers valid (dnspython's validator) and cached exactly."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import dns.dnssec
import dns.message
import dns.name
import dns.rdatatype
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from skydns.options import ConfigError
from skydns.record import decode_record, key_path, name_labels
from skyserve import config as cfg
from skyserve.dnssec.keys import KeyFileError, _public_bytes, read_key
from skyserve.dnssec.sign import window
from skyserve.dnssec.signer import Signer
from skyserve.index import Change, Index
from skyserve.lookup import Settings, Zone
from skyserve.pipeline.chain import Pipeline
from skyserve.pipeline.context import Settings as PipelineSettings

ZONE = Zone(name_labels("skydns.test"))
RECORDS = {"/skydns/test/skydns/a/x1": '{"host":"10.0.0.1"}',
           "/skydns/test/skydns/w/*": '{"host":"10.0.0.3"}'}


def write_key(directory: Path, zone: str = "skydns.test.", algorithm: int = 13,
              private: bool = True) -> str:
    """A P-256 key in dnssec-keygen's two files; returns the base name."""
    secret = ec.generate_private_key(ec.SECP256R1())
    public = base64.b64encode(_public_bytes(secret)).decode()
    base = directory / f"K{zone}+{algorithm:03d}+00001"
    (directory / f"{base.name}.key").write_text(
        f"; a zone-signing key\n{zone} IN DNSKEY 257 3 {algorithm} {public}\n")
    if private:
        scalar = secret.private_numbers().private_value.to_bytes(32, "big")
        (directory / f"{base.name}.private").write_text(
            f"Private-key-format: v1.3\nAlgorithm: {algorithm} (ECDSAP256SHA256)\n"
            f"PrivateKey: {base64.b64encode(scalar).decode()}\n")
    return str(base)


def test_a_key_is_named_by_either_file_or_the_base_name(tmp_path: Path) -> None:
    base = write_key(tmp_path)
    keys = [read_key(p, ZONE.labels) for p in (base, base + ".key", base + ".private")]
    assert len({k.tag for k in keys}) == 1 and keys[0].ksk and keys[0].algorithm == 13


def test_bad_key_files_get_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match=r"not for the zone skydns\.test\."):
        read_key(write_key(tmp_path, zone="other.test."), ZONE.labels)
    with pytest.raises(KeyFileError, match="algorithm 8 is not supported"):
        read_key(write_key(tmp_path, algorithm=8), ZONE.labels)
    with pytest.raises(KeyFileError, match=r"\.private: no such key file"):
        read_key(write_key(tmp_path, private=False), ZONE.labels)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one, two = write_key(tmp_path / "a"), write_key(tmp_path / "b")
    Path(one + ".private").write_text(Path(two + ".private").read_text())
    with pytest.raises(KeyFileError, match="does not match"):
        read_key(one, ZONE.labels)


def engine(signer: Signer | None) -> Pipeline:
    e = Pipeline(PipelineSettings([ZONE], Settings(), shuffle=False, dnssec=signer))
    idx = Index()
    for k, js in RECORDS.items():
        idx.put(key_path(k) or (), decode_record(k, js))
    e.load(idx, 42)
    return e


QUESTIONS = [("a.skydns.test.", "A"), ("X1.a.skydns.TEST.", "A"), ("q.w.skydns.test.", "A"),
             ("nope.skydns.test.", "A"), ("a.skydns.test.", "MX"), ("skydns.test.", "SOA")]


def test_do0_answers_are_the_same_bytes_with_signing_on(tmp_path: Path) -> None:
    signer = Signer({ZONE: [read_key(write_key(tmp_path), ZONE.labels)]})
    plain, signed = engine(None), engine(signer)
    for name, rdtype in QUESTIONS:
        for edns in (-1, 0):
            wire = dns.message.make_query(name, rdtype, use_edns=edns).to_wire()
            assert plain.handle(wire, False) == signed.handle(wire, False)


def test_signed_answers_validate_and_the_cache_drops_them_on_change(tmp_path: Path) -> None:
    signer = Signer({ZONE: [read_key(write_key(tmp_path), ZONE.labels)]})
    e = engine(signer)
    zone = dns.name.from_text("skydns.test.")

    def ask(name: str, rdtype: str) -> dns.message.Message:
        wire = dns.message.make_query(name, rdtype, want_dnssec=True).to_wire()
        first, second = e.handle(wire, False), e.handle(wire, False)
        assert first == second  # the second from the answer cache
        assert first is not None
        return dns.message.from_wire(first)

    keys = {zone: ask("skydns.test.", "DNSKEY").answer[0]}
    for name, rdtype in QUESTIONS:
        reply = ask(name, rdtype)
        for section in (reply.answer, reply.authority, reply.additional):
            sigs = {(s.name, s.covers): s for s in section if s.rdtype == dns.rdatatype.RRSIG}
            for rrset in section:
                if rrset.rdtype != dns.rdatatype.RRSIG:
                    dns.dnssec.validate(rrset, sigs[(rrset.name, rrset.rdtype)], keys)
    before = ask("nope.skydns.test.", "A")
    path = key_path("/skydns/test/skydns/b") or ()
    e.apply([Change(path, "/skydns/test/skydns/b",
                    record=decode_record("/skydns/test/skydns/b", '{"host":"10.9.9.9"}'))], 43)
    after = ask("nope.skydns.test.", "A")  # elsewhere, but the signed SOA serial moved on
    assert [r[0].serial for r in before.authority if r.rdtype == 6] == [42]
    assert [r[0].serial for r in after.authority if r.rdtype == 6] == [43]


def test_windows_are_weekly_and_signatures_renewed_a_week_before_expiry() -> None:
    week = 7 * 86400
    for now in (1_796_000_000.0, 1_796_000_000.0 + 3 * 86400, 1_796_000_000.0 + week):
        win = window(now)
        assert win.inception < now < win.resign_at <= win.expiration - week
        assert win.resign_at - now <= week  # renewed within the week it was made
        assert window(win.resign_at - 1) == win != window(win.resign_at)  # same all week


def test_a_cached_signed_answer_expires_when_its_window_ends(tmp_path: Path) -> None:
    e = engine(Signer({ZONE: [read_key(write_key(tmp_path), ZONE.labels)]}))
    wire = dns.message.make_query("a.skydns.test.", "A", want_dnssec=True).to_wire()
    e.handle(wire, False)
    entry = e.shared.answers.get(wire, False)
    assert entry is not None
    left = window(time.time()).resign_at - time.time()
    assert abs(entry.expires - time.monotonic() - left) < 5


def test_the_dnssec_option_reads_its_keys_at_start_up(tmp_path: Path) -> None:
    base = write_key(tmp_path)
    config = cfg.load(["--zone", "skydns.test.", "--dnssec", f"skydns.test.={base}"], {})
    signer = config.signer()
    assert signer is not None and signer.signs(ZONE)
    env = {"SKYSERVE_DNSSEC": f"skydns.test.={base}.key"}
    loaded = cfg.load(["--zone", "skydns.test."], env).dnssec
    assert loaded == (("skydns.test.", (f"{base}.key",)),)
    with pytest.raises(ConfigError, match=r"--dnssec.*no such key file"):
        cfg.load(["--zone", "skydns.test.", "--dnssec", f"skydns.test.={tmp_path}/K"], {})
    with pytest.raises(ConfigError, match=r"not for the zone other\.test\."):
        cfg.load(["--zone", "skydns.test.", "--dnssec", f"other.test.={base}"], {})
    other = write_key(tmp_path, zone="other.test.")
    with pytest.raises(ConfigError, match=r"--dnssec: other\.test\. is not one of"):
        cfg.load(["--zone", "skydns.test.", "--dnssec", f"other.test.={other}"], {})
