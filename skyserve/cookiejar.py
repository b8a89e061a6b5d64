"""DNS server cookies as RFC 9018 defines them, so replicas and BIND interoperate.

A server cookie is 16 bytes: version 1, three reserved bytes, a 32-bit timestamp and an
8-byte SipHash-2-4 (keyed with a 128-bit secret) over the client cookie, the version,
the reserved bytes, the timestamp and the client's address (4 or 16 bytes). Any server
holding the same secret can check it, which is what lets several replicas, or BIND with
``cookie-algorithm siphash24``, share clients.

The secret file holds one or more 128-bit secrets in hex, one per line: the first mints
cookies, every one is accepted, so a rotation puts the new secret on top and keeps the
old one below it for an hour.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from siphash24 import siphash24

VERSION = 1
CLIENT_COOKIE = 8
SERVER_COOKIE = 16  # our own: RFC 9018 layout
MAX_AGE = 3600  # RFC 9018 section 4.3: older ones are no longer accepted
MAX_AHEAD = 300  # nor those from more than five minutes in the future


def read_secrets(path: str) -> tuple[bytes, ...]:
    """The secrets in ``path`` (ValueError naming the file and line when one is bad)."""
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            lines = [line.strip() for line in f.read().splitlines()]
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    secrets = []
    for number, line in enumerate(lines, 1):
        if not line or line.startswith("#"):
            continue
        try:
            secret = bytes.fromhex(line)
        except ValueError:
            raise ValueError(f"{path} line {number}: not hex") from None
        if len(secret) != 16:
            raise ValueError(f"{path} line {number}: a secret is 128 bits (32 hex digits), "
                             f"got {len(secret) * 8}")
        secrets.append(secret)
    if not secrets:
        raise ValueError(f"{path}: no secret in the file")
    return tuple(secrets)


def address_bytes(ip: str) -> bytes:
    return ipaddress.ip_address(ip).packed


@dataclass(frozen=True, slots=True)
class Jar:
    secrets: tuple[bytes, ...]  # the first mints; all are accepted
    require: bool = False  # UDP queries without a valid server cookie get BADCOOKIE

    def mint(self, client: bytes, address: bytes, now: int) -> bytes:
        """A fresh server cookie for this client cookie and address."""
        return _cookie(self.secrets[0], client, b"\x00\x00\x00", now, address)

    def valid(self, client: bytes, server: bytes, address: bytes, now: int) -> bool:
        """Whether ``server`` is one of ours (any secret), for this client, and fresh."""
        if len(server) != SERVER_COOKIE or server[0] != VERSION:
            return False
        stamp: int = struct.unpack_from("!I", server, 4)[0]
        age = (now - stamp) & 0xFFFFFFFF  # serial arithmetic (RFC 1982) for the wrap
        if age > MAX_AGE and (stamp - now) & 0xFFFFFFFF > MAX_AHEAD:
            return False
        reserved = server[1:4]
        return any(_cookie(s, client, reserved, stamp, address) == server
                   for s in self.secrets)


def _cookie(secret: bytes, client: bytes, reserved: bytes, stamp: int, address: bytes) -> bytes:
    head = bytes([VERSION]) + reserved + struct.pack("!I", stamp)
    digest: bytes = siphash24(client + head + address, key=secret).digest()
    return head + digest
