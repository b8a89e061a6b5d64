"""What the direct stage (1b) knows of each of our zones, worked out once: its apex (as
labels and as wire bytes), the labels just below it that it leaves to the general path,
and its negative-answer SOA as a template by where the apex sits in the question; and
the cluster layout's own levels, read from a name's octets (``layout_level``)."""

from __future__ import annotations

from ..lookup import Zone
from ..wire import constants as T
from ..wire.constants import RR_FIXED, SOA_TIMERS
from ..wire.query import encode_name
from ..wire.rr import RR

# A direct reply's shape: the query's size, where its name ends, its type, the kind of
# reply, its RD and CD flags, its EDNS (``plain_edns``), TCP.
Shape = tuple[int, int, int, int, int, int, bool]
# What replies of a shape share: the header after the ID, what follows the answer record,
# the Tally id of their Stat, where the SOA serial is (-1: none), and the shape's hash.
Made = tuple[bytes, bytes, int, int, int]
LAYOUT_TOPS = frozenset((b"\x03svc", b"\x03pod"))  # where the cluster layout's own levels are

class ZoneFacts:
    """What the direct stage needs of a zone, worked out once."""

    __slots__ = ("cluster", "depth", "fallthrough", "labels", "near_apex", "near_apex_wire",
                 "replies", "serial", "signed", "soa_rr", "text", "wire", "wire_length")

    def __init__(self, zone: Zone, soa: RR, fallthrough: bool, signed: bool) -> None:
        self.labels = zone.labels
        self.depth = len(zone.labels)
        self.text = zone.text
        self.cluster = zone.cluster
        self.fallthrough = fallthrough
        self.signed = signed
        self.wire = encode_name(zone.labels)  # as a query's name ends in it, lower-case
        self.wire_length = len(self.wire)
        self.soa_rr = soa  # ``lookup.Authority.soa``: what the general path renders
        mname, rname = soa.rdata[0], soa.rdata[1]
        # A question with one of these just below the apex shares more of the SOA's names
        # than the apex: ``render`` would compress them further than the template does.
        self.near_apex = frozenset((mname[-self.depth - 1], rname[-self.depth - 1]))
        self.near_apex_wire = frozenset(encode_name((label,))[:-1] for label in self.near_apex)
        self.serial = b""  # the SOA serial the replies below carry
        self.replies: dict[Shape, Made] = {}  # what replies of one shape share (``Direct``)

    def renew(self, serial: bytes) -> None:
        """A new revision: the negative replies' SOA serial is ``serial``."""
        self.serial = serial
        self.replies.clear()


def soa_pieces(soa: RR, depth: int, pointer: int) -> tuple[bytes, bytes]:
    """The synthesized SOA as ``render`` writes it after a question whose apex (``depth``
    labels) starts at ``pointer``: the bytes before the serial and after. Its owner is the
    apex; its two names are their own labels above the apex, then a pointer to it (they
    share nothing else with each other)."""
    apex = (0xC000 | pointer).to_bytes(2, "big")
    mname, rname, *timers = soa.rdata
    rdata_head = (encode_name(mname[:-depth])[:-1] + apex
                  + encode_name(rname[:-depth])[:-1] + apex)
    tail = SOA_TIMERS.pack(*timers)
    fixed = RR_FIXED.pack(T.SOA, T.CLASS_IN, soa.ttl, len(rdata_head) + 4 + len(tail))
    return apex + fixed + rdata_head, tail


def layout_level(key: bytes, below: int, apex: int) -> bool:
    """``lookup.structural`` of a cluster-zone name given as its flat-table key, the zone's
    apex starting at ``apex`` and the label just below it at ``below``: svc, pod, a
    namespace, or an SRV protocol level (``_proto.<service>.<namespace>.svc``)."""
    top = key[below:apex]
    if top not in LAYOUT_TOPS:
        return False
    labels, at = 0, 0
    while at < apex:
        labels, at = labels + 1, at + key[at] + 1
    return labels <= 2 or (labels == 4 and top == b"\x03svc" and key[1] == 95)
