"""RFC 9018 server cookies against the RFC's own Appendix A vectors, so our cookies are
the ones BIND, knot and any RFC 9018 server sharing the secret make; and the secret file."""

from __future__ import annotations

from pathlib import Path

import pytest

from skydns.options import ConfigError
from skyserve import config as cfg
from skyserve.cookiejar import Jar, address_bytes, read_secrets

SECRET = bytes.fromhex("e5e973e5a6b2a43f48e7dc849e37bfcf")


@pytest.mark.parametrize(("client", "ip", "stamp", "want"), [
    ("2464c4abcf10c957", "198.51.100.100", 1559731985, "010000005cf79f111f8130c3eee29480"),
    ("2464c4abcf10c957", "198.51.100.100", 1559734385, "010000005cf7a871d4a564a1442aca77"),
    ("fc93fc62807ddb86", "203.0.113.203", 1559734700, "010000005cf7a9acf73a7810aca2381e"),
])
def test_minted_cookies_are_the_rfc_9018_vectors(client: str, ip: str, stamp: int,
                                                 want: str) -> None:
    assert Jar((SECRET,)).mint(bytes.fromhex(client), address_bytes(ip), stamp).hex() == want


def test_the_rfc_vectors_verify_reserved_bytes_and_old_secrets_included() -> None:
    # A.3: the client's server cookie has reserved bytes set; they are part of the hash.
    a3 = bytes.fromhex("fc93fc62807ddb8601abcdef5cf78f71a314227b6679ebf5")
    jar = Jar((SECRET,))
    assert jar.valid(a3[:8], a3[8:], address_bytes("203.0.113.203"), 1559727985 + 10)
    assert not jar.valid(a3[:8], a3[8:], address_bytes("203.0.113.204"), 1559727985 + 10)
    # A.4: an IPv6 client's cookie made with the secret before a rollover.
    a4 = bytes.fromhex("22681ab97d52c298010000005cf7c57926556bd0934c72f8")
    old, new = (bytes.fromhex(h) for h in ("dd3bdf9344b678b185a6f5cb60fca715",
                                           "445536bcd2513298075a5d379663c962"))
    ip6 = address_bytes("2001:db8:220:1:59de:d0f4:8769:82b8")
    assert Jar((new, old)).valid(a4[:8], a4[8:], ip6, 1559741817 + 60)
    assert not Jar((new,)).valid(a4[:8], a4[8:], ip6, 1559741817 + 60)


def test_an_hour_old_cookie_holds_and_one_a_second_older_does_not() -> None:
    jar, ip = Jar((SECRET,)), address_bytes("192.0.2.1")
    cookie = jar.mint(b"clientck", ip, 1_000_000)
    assert jar.valid(b"clientck", cookie, ip, 1_000_000 + 3600)
    assert not jar.valid(b"clientck", cookie, ip, 1_000_000 + 3601)
    assert jar.valid(b"clientck", cookie, ip, 1_000_000 - 300)  # clock skew allowed
    assert not jar.valid(b"clientck", cookie, ip, 1_000_000 - 301)
    wrapped = jar.mint(b"clientck", ip, 0xFFFFFF00)  # across the 32-bit wrap
    assert jar.valid(b"clientck", wrapped, ip, 0x100)


def test_the_secret_file_is_checked_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text(f"# current first\n{'ab' * 16}\n{'cd' * 16}\n")
    assert read_secrets(str(path)) == (b"\xab" * 16, b"\xcd" * 16)
    path.write_text(f"{'ab' * 16}\nzz\n")
    with pytest.raises(ConfigError, match=r"--cookie-secret.*line 2: not hex"):
        cfg.load(["--zone", "x.", "--cookie-secret", str(path)], {})
    path.write_text("abcd\n")
    with pytest.raises(ConfigError, match="128 bits"):
        cfg.load(["--zone", "x.", "--cookie-secret", str(path)], {})
    with pytest.raises(ConfigError, match="--cookie-require: needs --cookie-secret"):
        cfg.load(["--zone", "x.", "--cookie-require", "true"], {})


def test_acl_and_rrl_options_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"--acl.*action must be one of"):
        cfg.load(["--zone", "x.", "--acl", "x.=deny:10.0.0.0/8"], {})
    with pytest.raises(ConfigError, match=r"--acl.*does not appear to be"):
        cfg.load(["--zone", "x.", "--acl", "x.=block:10.0.0.300/8"], {})
    config = cfg.load(["--zone", "x."], {"SKYSERVE_ACL": "x.=block:10.0.0.0/8;.=allow:::1",
                                          "SKYSERVE_RRL_RATE": "10"})
    assert [r.action for r in config.acl] == ["block", "allow"]
    assert config.rrl is not None and config.rrl.rate == 10 and config.rrl.slip == 2
    assert cfg.load(["--zone", "x."], {}).rrl is None
