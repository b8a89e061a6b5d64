"""What the stages are built from: the settings, and the parts several stages share."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..access import Rule
from ..cookiejar import Jar
from ..dnssec.signer import Signer
from ..forward.forwarder import Forwarder
from ..lookup import Settings as LookupSettings
from ..lookup import Zone
from ..ratelimit import RrlSettings
from ..stats import Stats
from ..wire import constants as T
from ..wire.constants import OPT_NSID, RR_FIXED
from ..wire.query import ede_option, edns_option, reply_limit
from ..wire.render import Rendered, render
from ..wire.rr import RR
from .answers import AnswerCache
from .request import Request

Sections = tuple[list[list[RR]], list[list[RR]], list[list[RR]]]
NO_RECORDS: Sections = ([], [], [])


@dataclass(frozen=True, slots=True)
class Settings:
    zones: list[Zone]
    lookup: LookupSettings = field(default_factory=LookupSettings)
    max_udp: int = 1232  # largest UDP reply we send (EDNS0)
    cache_entries: int = 20_000  # rendered answers kept (CoreDNS: 9,984 + 9,984)
    cache_bytes: int = 8 << 20  # and the bytes they may take
    fallthrough: frozenset[Zone] = frozenset()  # zones whose NXDOMAINs are forwarded
    shuffle: bool = True  # rotate multi-record answers
    serial_offset: int = 0  # added to the etcd revision to make the SOA serial
    nsid: bytes = b""  # our NSID (RFC 5001), sent to queries that ask for it; b"": none
    # The internet-facing defences; each off unless set (the cluster pod sets none).
    rrl: RrlSettings | None = None  # response rate limiting
    cookies: Jar | None = None  # DNS cookies (RFC 7873, RFC 9018)
    acl: tuple[Rule, ...] = ()  # per-zone allow/block/drop by source prefix
    minimal_any: bool = False  # one RRset for ANY over UDP (RFC 8482)
    tcp_keepalive: float = 0.0  # idle timeout offered to TCP clients that ask (RFC 7828)
    dnssec: Signer | None = None  # the keys of the zones signed online (DO=1 answers)

    @property
    def guarded(self) -> bool:
        """Whether stages that must see every query come before the answer cache."""
        return bool(self.rrl or self.cookies or self.acl or self.tcp_keepalive)


class Shared:
    """The parts of the query path that more than one stage uses."""

    def __init__(self, settings: Settings, stats: Stats, forwarder: Forwarder | None) -> None:
        self.settings = settings
        self.stats = stats
        self.forwarder = forwarder
        self.answers = AnswerCache(settings.cache_entries, stats, settings.cache_bytes)
        # Our OPT record in the reply to a plain query, by ``direct.plain_edns``'s value
        # (0: none, 1: an OPT, 2: one with DO): no options (a query asking for one, NSID,
        # is not plain), version 0, no extended rcode.
        plain, do = (b"\x00" + RR_FIXED.pack(T.OPT, settings.max_udp, flag, 0)
                     for flag in (0, 0x8000))
        self.plain_opt = (b"", plain, do)

    def render(self, req: Request, rcode: int, sections: Sections, aa: bool = True,
               ede: bytes = b"") -> Rendered:
        """A reply to the request, within the size its transport and EDNS allow; ``ede``
        is an Extended DNS Error option for EDNS clients."""
        max_udp = self.settings.max_udp
        return render(req.query, rcode, sections, limit=reply_limit(req.query, req.tcp, max_udp),
                      aa=aa, ra=self.forwarder is not None, max_udp=max_udp,
                      options=self.options(req, ede))

    def options(self, req: Request, ede: bytes = b"") -> bytes:
        """The EDNS options of our reply: the NSID if asked for and configured, the EDE."""
        nsid = self.settings.nsid
        if nsid and req.query.nsid:
            return edns_option(OPT_NSID, nsid) + ede
        return ede

    def error(self, req: Request, rcode: int, zone: str, info: int | None = None,
              text: str = "") -> bytes:
        """A reply with no records, counted under ``zone``; ``info`` is its EDE info-code."""
        ede = ede_option(info, text) if info is not None else b""
        reply = self.render(req, rcode, NO_RECORDS, aa=False, ede=ede).wire
        req.count(self.stats.tally, zone, rcode, "", len(reply))
        return reply
