"""Zone keys from BIND's ``dnssec-keygen`` files (``K<zone>.+<alg>+<tag>.key/.private``).

A key is named by its ``.key`` or ``.private`` file or their common base name, as BIND's
tools accept. Both files are read; anything wrong (no such file, another zone, an
algorithm we do not sign with, a private part that is missing or does not match the
public one) is a ``KeyError_`` naming the file and what is wrong.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from skydns.record import Labels

from .canon import wire_name

ECDSAP256SHA256 = 13
ED25519 = 15
ALGORITHMS = {ECDSAP256SHA256: "ECDSAP256SHA256", ED25519: "ED25519"}
ZONE_KEY = 0x0100  # DNSKEY flags: a zone key (RFC 4034 section 2.1.1)
SEP = 0x0001  # the secure entry point: a key-signing key
PROTOCOL = 3
DS_SHA256 = 2  # RFC 4509

# cryptography is imported where a key is read or used: loaded with OpenSSL it is ~8 MiB
# of resident memory that a server without --dnssec does not need.
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


class KeyFileError(ValueError):
    """A key file that cannot be used; the message names the file."""


@dataclass(frozen=True, slots=True)
class ZoneKey:
    zone: Labels
    flags: int
    algorithm: int
    public: bytes  # the DNSKEY public key field
    private: PrivateKey

    @property
    def rdata(self) -> bytes:
        """The DNSKEY RDATA (RFC 4034 section 2.1)."""
        return struct.pack("!HBB", self.flags, PROTOCOL, self.algorithm) + self.public

    @property
    def tag(self) -> int:
        """The key tag (RFC 4034 Appendix B)."""
        total = sum(b << 8 if i % 2 == 0 else b for i, b in enumerate(self.rdata))
        return (total + (total >> 16)) & 0xFFFF

    @property
    def ksk(self) -> bool:
        return bool(self.flags & SEP)

    def sign(self, data: bytes) -> bytes:
        """The signature field of an RRSIG over ``data`` (RFC 6605 r||s, or RFC 8080)."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        if isinstance(self.private, ed25519.Ed25519PrivateKey):
            return self.private.sign(data)
        r, s = decode_dss_signature(self.private.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def ds(self) -> str:
        """The DS record for the parent zone, SHA-256 digest, in zone-file text."""
        digest = hashlib.sha256(wire_name(self.zone) + self.rdata).hexdigest().upper()
        owner = ".".join(self.zone) + "."
        return f"{owner} IN DS {self.tag} {self.algorithm} {DS_SHA256} {digest}"


def base_name(path: str) -> str:
    for suffix in (".key", ".private"):
        if path.endswith(suffix):
            return path[: -len(suffix)]
    return path


def read_key(path: str, zone: Labels) -> ZoneKey:
    """The key named by ``path`` (``.key``, ``.private`` or base name), for ``zone``."""
    base = base_name(path)
    flags, algorithm, public = _read_public(base + ".key", zone)
    private = _read_private(base + ".private", algorithm)
    derived = _public_bytes(private)
    if derived != public:
        raise KeyFileError(f"{base}.private: the private key does not match {base}.key")
    return ZoneKey(zone, flags, algorithm, public, private)


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="ascii") as f:
            return f.read()
    except FileNotFoundError:
        raise KeyFileError(f"{path}: no such key file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"{path}: cannot read it ({exc})") from None


def _read_public(path: str, zone: Labels) -> tuple[int, int, bytes]:
    lines = [line.split(";", 1)[0].split() for line in _read_text(path).splitlines()]
    tokens = next((t for t in lines if "DNSKEY" in (w.upper() for w in t)), None)
    if tokens is None:
        raise KeyFileError(f"{path}: no DNSKEY record in it")
    owner = tokens[0].lower().rstrip(".")
    want = ".".join(zone)
    if owner != want:
        raise KeyFileError(f"{path}: the key is for {owner}., not for the zone {want}.")
    at = [w.upper() for w in tokens].index("DNSKEY")
    try:
        flags, protocol, algorithm = (int(w) for w in tokens[at + 1 : at + 4])
        public = base64.b64decode("".join(tokens[at + 4 :]), validate=True)
    except (ValueError, binascii.Error):
        raise KeyFileError(f"{path}: the DNSKEY record is malformed") from None
    if algorithm not in ALGORITHMS:
        raise KeyFileError(f"{path}: algorithm {algorithm} is not supported (use "
                           f"{ECDSAP256SHA256} ECDSAP256SHA256 or {ED25519} ED25519)")
    if protocol != PROTOCOL or not flags & ZONE_KEY:
        raise KeyFileError(f"{path}: not a zone key (flags {flags}, protocol {protocol})")
    return flags, algorithm, public


def _read_private(path: str, algorithm: int) -> PrivateKey:
    fields = dict(line.split(":", 1) for line in _read_text(path).splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    named = fields.get("Algorithm", "").split()
    if not named or named[0] != str(algorithm):
        raise KeyFileError(f"{path}: algorithm {' '.join(named) or 'missing'}, but the "
                           f".key file says {algorithm}")
    if "PrivateKey" not in fields:
        raise KeyFileError(f"{path}: no PrivateKey field (not a private key file?)")
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    try:
        secret = base64.b64decode(fields["PrivateKey"], validate=True)
        if algorithm == ED25519:
            return ed25519.Ed25519PrivateKey.from_private_bytes(secret)
        return ec.derive_private_key(int.from_bytes(secret, "big"), ec.SECP256R1())
    except (ValueError, binascii.Error):
        raise KeyFileError(f"{path}: the PrivateKey field is malformed") from None


def _public_bytes(private: PrivateKey) -> bytes:
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    if isinstance(private, ed25519.Ed25519PrivateKey):
        return private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    point = private.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    return point[1:]  # RFC 6605: x || y, without the 0x04 prefix
