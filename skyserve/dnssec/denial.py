"""Denial of existence without a zone-wide chain: compact denial (RFC 9824).

The zone changes with every etcd write, so there is no sorted list of names to chain.
A negative answer carries one NSEC, owned by the name denied itself, whose next name is
that name's immediate successor (``\\000.<name>``), so it covers no other name:

* NODATA — the bitmap lists the types the name has (what the lookup answers there, so a
  SkyDNS name whose records live below it shows them) plus RRSIG and NSEC;
* NXDOMAIN — the bitmap is RRSIG, NSEC and NXNAME, and the rcode NOERROR, as RFC 9824
  section 3 prescribes (validators of today accept it as NODATA; NXNAME tells which).

A positive answer expanded from a wildcard needs proof that the name asked for does not
exist (RFC 4035 section 5.3.4): an NSEC from just before the "next closer" name to just
after it and its descendants (RFC 4471), which covers that name and nothing that exists.
Its next name is a sibling (``<label>\\000``), never a descendant: validators read the
closest encloser off the NSEC's names (unbound does), and a descendant would make the
name denied its own encloser.
"""

from __future__ import annotations

from skydns.record import Labels

from ..wire import constants as T
from ..wire.rr import RR
from .canon import wire_name

UPPER = range(ord("A"), ord("Z") + 1)
MAX_LABEL = 63
MAX_NAME = 255


def bitmap(types: set[int]) -> bytes:
    """The NSEC type bitmap field (RFC 4034 section 4.1.2)."""
    out = bytearray()
    for block in sorted({t >> 8 for t in types}):
        bits = bytearray(32)
        for t in types:
            if t >> 8 == block:
                bits[(t & 0xFF) >> 3] |= 0x80 >> (t & 7)
        length = max(i for i, b in enumerate(bits) if b) + 1
        out += bytes((block, length)) + bits[:length]
    return bytes(out)


def nsec(owner: Labels, next_name: Labels, types: set[int], ttl: int) -> RR:
    rdata = wire_name(next_name) + bitmap(types | {T.RRSIG, T.NSEC})
    return RR(owner, T.NSEC, ttl, (rdata,))


def nodata(name: Labels, types: set[int], ttl: int) -> RR:
    return nsec(name, ("\0", *name), types, ttl)


def nxname(name: Labels, ttl: int) -> RR:
    return nsec(name, ("\0", *name), {T.NXNAME}, ttl)


def covering(name: Labels, ttl: int) -> RR:
    """An NSEC that covers ``name`` (which does not exist) and nothing else."""
    return nsec(predecessor(name), successor(name), set(), ttl)


def successor(name: Labels) -> Labels:
    """The first name after ``name`` and all its descendants: its label with ``\\000``
    appended (a full-length label has no such sibling: then ``\\000.<name>``)."""
    label, parent = name[0], name[1:]
    if len(label) < MAX_LABEL:
        return (label + "\0", *parent)
    return ("\0", *name)


def predecessor(name: Labels) -> Labels:
    """A name just before ``name`` in canonical order, with nothing existing between.

    The leftmost label is made one step smaller (a trailing ``\\000`` dropped, else the
    last octet decremented and the label filled up with ``\\377``); that name and the
    names below it sort before ``name``. Its descendants are not filled in: a label of
    ``\\377`` octets is no host name a record could have.
    """
    label, parent = name[0], name[1:]
    if label.endswith("\0"):
        return (label[:-1], *parent) if len(label) > 1 else parent
    last = ord(label[-1]) - 1
    if last in UPPER:  # canonical order compares lowercase: step below the letters
        last = ord("A") - 1
    room = min(MAX_LABEL, MAX_NAME - len(wire_name(parent)) - 1)
    smaller = label[:-1] + chr(last)
    return (smaller + "\xff" * (room - len(smaller)), *parent)
