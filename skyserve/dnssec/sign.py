"""RRSIGs over RRsets, with validity windows that every replica agrees on.

The window is fixed per week, as PowerDNS does: signatures made at any time in one week
(weeks counted from the Unix epoch, a Thursday) have inception one week before that
week's start and expiry two weeks after it. Every replica thus signs with the same
window, and a signature is always at least a week from expiry when it is made; an
answer signed in one week is re-signed the first time it is asked for in the next.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from skydns.record import Labels

from ..wire import constants as T
from ..wire.rr import RR
from .canon import rrset_wire, wire_name
from .keys import ZoneKey

WEEK = 7 * 86400
RRSIG_FIXED = struct.Struct("!HBBIIIH")


class Window(NamedTuple):
    inception: int
    expiration: int
    resign_at: float  # wall-clock time from which answers are signed with the next window


def window(now: float) -> Window:
    start = int(now) // WEEK * WEEK
    return Window(start - WEEK, start + 2 * WEEK, float(start + WEEK))


def label_count(owner: Labels) -> int:
    """RFC 4034 section 3.1.3: the labels of the owner, not counting a leading ``*``."""
    return len(owner) - (1 if owner and owner[0] == "*" else 0)


def rrsig(rrset: list[RR], key: ZoneKey, win: Window, serial: int,
          labels: int | None = None) -> RR:
    """The RRSIG of one RRset by ``key``. ``labels`` below the owner's count marks an
    answer expanded from the wildcard ``*.<the rightmost labels>`` (RFC 4035 5.3.2)."""
    first = rrset[0]
    count = label_count(first.owner) if labels is None else labels
    owner = first.owner
    if count != label_count(owner):
        owner = ("*", *owner[len(owner) - count :])
    fixed = RRSIG_FIXED.pack(first.rtype, key.algorithm, count, first.ttl,
                             win.expiration, win.inception, key.tag) + wire_name(key.zone)
    signature = key.sign(fixed + rrset_wire(rrset, wire_name(owner), serial))
    return RR(first.owner, T.RRSIG, first.ttl, (fixed + signature,))
