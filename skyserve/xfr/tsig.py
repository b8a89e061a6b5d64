"""TSIG (RFC 8945) with HMAC-SHA256: verify a signed request, sign replies and NOTIFYs.

Only what a primary needs. A request's TSIG is the last additional record; its MAC covers
the request with the original ID and ARCOUNT less one, then the TSIG variables. The first
reply's MAC also covers the request's MAC; each later message of a transfer covers the
previous message's MAC, the message and only the timers (section 5.3.1). Every message of
a transfer is signed.

Errors follow section 5.2: an unknown key or algorithm is BADKEY and a wrong MAC BADSIG,
both NOTAUTH and unsigned; a time outside the fudge is BADTIME, NOTAUTH and signed, with
our time in the other data.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
import time
from dataclasses import dataclass

from skydns.record import Labels, name_labels

from ..wire.constants import HEADER
from ..wire.query import encode_name, read_name, skip_name

TSIG = 250
CLASS_ANY = 255
FUDGE = 300
NOTAUTH = 9
BADSIG, BADKEY, BADTIME, BADTRUNC = 16, 17, 18, 22
ALGORITHMS = {"hmac-sha256": hashlib.sha256}


@dataclass(frozen=True, slots=True)
class Key:
    name: Labels
    algorithm: str  # a name in ALGORITHMS
    secret: bytes

    @property
    def wire_name(self) -> bytes:
        return encode_name(self.name)

    def mac(self, data: bytes) -> bytes:
        return hmac.new(self.secret, data, ALGORITHMS[self.algorithm]).digest()


def parse_key(raw: str) -> Key:
    """``NAME=ALGORITHM:BASE64SECRET`` (what --tsig-key takes)."""
    name, sep, rest = raw.partition("=")
    algorithm, sep2, secret = rest.partition(":")
    if not sep or not sep2 or not name.strip():
        raise ValueError(f"expected NAME=ALGORITHM:BASE64SECRET, got {raw!r}")
    algorithm = algorithm.strip().lower().rstrip(".")
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm {algorithm!r} is not supported (use hmac-sha256)")
    try:
        secret_bytes = base64.b64decode(secret.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"the secret of key {name.strip()!r} is not valid base64") from None
    if not secret_bytes:
        raise ValueError(f"the secret of key {name.strip()!r} is empty")
    return Key(name_labels(name.strip()), algorithm, secret_bytes)


@dataclass(slots=True)
class Signed:
    """A request's TSIG: the key it names, its MAC and what the reply's MAC starts from."""

    key_name: Labels
    algorithm: Labels
    time_signed: int
    mac: bytes
    original_id: int
    error: int = 0  # our verdict: 0, BADKEY, BADSIG or BADTIME
    key: Key | None = None  # set when the key is known and the MAC verified


def find(data: bytes) -> tuple[int, Signed] | None:
    """The TSIG at the end of a message, with its offset; None when unsigned."""
    _, _, qd, an, ns, ar = HEADER.unpack_from(data)
    if ar == 0:
        return None
    pos = HEADER.size
    for _ in range(qd):
        pos = skip_name(data, pos) + 4
    for _ in range(an + ns + ar - 1):
        pos = skip_name(data, pos)
        pos += 10 + struct.unpack_from("!H", data, pos + 8)[0]
    start = pos
    owner, pos = read_name(data, pos)
    rtype, _, _, rdlength = struct.unpack_from("!HHIH", data, pos)
    if rtype != TSIG:
        return None
    pos += 10
    if pos + rdlength != len(data):
        raise ValueError("TSIG is not the last record")
    algorithm, pos = read_name(data, pos)
    high, low, _fudge, mac_size = struct.unpack_from("!HIHH", data, pos)
    pos += 10
    mac = data[pos : pos + mac_size]
    original_id = struct.unpack_from("!H", data, pos + mac_size)[0]
    return start, Signed(owner, algorithm, (high << 32) | low, mac, original_id)


def verify(data: bytes, keys: dict[Labels, Key], now: float | None = None) -> Signed | None:
    """Check a request's TSIG; None when it has none. ``error`` says what failed."""
    found = find(data)
    if found is None:
        return None
    start, signed = found
    key = keys.get(signed.key_name)
    if key is None or signed.algorithm != name_labels(key.algorithm):
        signed.error = BADKEY
        return signed
    if len(signed.mac) != ALGORITHMS[key.algorithm]().digest_size:
        signed.error = BADTRUNC if signed.mac else BADSIG
        return signed
    tsig_rdata = data[start:]
    message = _unsigned(data[:start], signed.original_id)
    variables = _variables(key, signed.time_signed, _error_and_other(tsig_rdata))
    if not hmac.compare_digest(key.mac(message + variables), signed.mac):
        signed.error = BADSIG
        return signed
    current = time.time() if now is None else now
    signed.key = key
    if abs(current - signed.time_signed) > FUDGE:
        signed.error = BADTIME
    return signed


class Signer:
    """Signs the messages of one reply in order, chaining each MAC to the one before."""

    def __init__(self, key: Key, request: Signed | None = None) -> None:
        self.key = key
        self.prior = _sized(request.mac) if request is not None else b""
        self.first = True
        self.error = request.error if request is not None else 0

    def sign(self, message: bytes, now: float | None = None) -> bytes:
        signed_at = int(time.time() if now is None else now)
        other = struct.pack("!HI", signed_at >> 32, signed_at & 0xFFFFFFFF) \
            if self.error == BADTIME else b""
        if self.first:
            tail = _variables(self.key, signed_at, struct.pack("!HH", self.error, len(other))
                              + other)
        else:
            tail = _timers(signed_at)
        mac = self.key.mac(self.prior + message + tail)
        self.prior, self.first = _sized(mac), False
        qid = struct.unpack_from("!H", message)[0]
        return append(message, self.key, signed_at, mac, qid, self.error, other)


def unsigned_error(message: bytes, signed: Signed) -> bytes:
    """A BADKEY/BADSIG reply's TSIG: the request's key name and algorithm, no MAC."""
    rdata = (encode_name(signed.algorithm) + _time(signed.time_signed)
             + struct.pack("!HH", FUDGE, 0)
             + struct.pack("!HHH", struct.unpack_from("!H", message)[0], signed.error, 0))
    return _with_record(message, encode_name(signed.key_name), rdata)


def append(message: bytes, key: Key, signed_at: int, mac: bytes, original_id: int,
           error: int = 0, other: bytes = b"") -> bytes:
    rdata = (encode_name(name_labels(key.algorithm)) + _time(signed_at)
             + struct.pack("!HH", FUDGE, len(mac)) + mac
             + struct.pack("!HHH", original_id, error, len(other)) + other)
    return _with_record(message, key.wire_name, rdata)


def _with_record(message: bytes, owner: bytes, rdata: bytes) -> bytes:
    out = bytearray(message)
    struct.pack_into("!H", out, 10, struct.unpack_from("!H", message, 10)[0] + 1)
    out += owner + struct.pack("!HHIH", TSIG, CLASS_ANY, 0, len(rdata)) + rdata
    return bytes(out)


def _unsigned(message: bytes, original_id: int) -> bytes:
    out = bytearray(message)
    struct.pack_into("!H", out, 0, original_id)
    struct.pack_into("!H", out, 10, struct.unpack_from("!H", message, 10)[0] - 1)
    return bytes(out)


def _error_and_other(tsig_record: bytes) -> bytes:
    """The error, other length and other data at the end of a TSIG record."""
    pos = skip_name(tsig_record, 0) + 10
    pos = skip_name(tsig_record, pos) + 8
    mac_size = struct.unpack_from("!H", tsig_record, pos)[0]
    return tsig_record[pos + 2 + mac_size + 2 :]


def _variables(key: Key, signed_at: int, error_and_other: bytes) -> bytes:
    return (key.wire_name + struct.pack("!HI", CLASS_ANY, 0)
            + encode_name(name_labels(key.algorithm)) + _timers(signed_at) + error_and_other)


def _timers(signed_at: int) -> bytes:
    return _time(signed_at) + struct.pack("!H", FUDGE)


def _time(seconds: int) -> bytes:
    return struct.pack("!HI", seconds >> 32, seconds & 0xFFFFFFFF)


def _sized(mac: bytes) -> bytes:
    return struct.pack("!H", len(mac)) + mac
