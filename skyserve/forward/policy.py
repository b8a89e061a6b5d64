"""The forwarding policy, with no sockets: the decisions CoreDNS's forward plugin makes.

* The pool is chosen by the longest matching stub domain, else the default upstreams.
* Upstreams are tried in policy order (random, round_robin, sequential), healthy ones
  first; an upstream that failed ``max_fails`` times in a row is unhealthy until a health
  check succeeds, and still tried, last, when every upstream is unhealthy.
* A SERVFAIL or REFUSED reply moves on to the next upstream (it answered, so it is
  healthy); a truncated UDP reply asks the same upstream again over TCP; anything else
  is the answer.
* When every upstream has failed the outcome is the stale cache entry if one is allowed
  (RFC 8767), else SERVFAIL.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple

from skydns.netaddr import split_hostport
from skydns.record import Labels

from ..wire.constants import (
    EDE_NETWORK_ERROR,
    EDE_NO_REACHABLE_AUTHORITY,
    REFUSED,
    SERVFAIL,
)
from ..wire.response import Response
from .cache import CachedResponse, Key
from .raw import RawRelay

POLICIES = ("random", "round_robin", "sequential")


class Outcome(NamedTuple):
    response: Response | None  # None: answer ``rcode`` ourselves
    rcode: int = 0
    age: int = 0  # seconds since the reply was cached
    stale: bool = False
    stored: float = 0.0  # monotonic time it was cached, and when it expires (0: not cached)
    expires: float = 0.0
    cached: bool = False  # served from the cache rather than just fetched
    entry: CachedResponse | None = None  # the cache entry, so hits can count toward prefetch
    ede: int | None = None  # the Extended DNS Error of an ``rcode`` of ours (RFC 8914)


Done = Callable[[Outcome], None]


@dataclass(frozen=True, slots=True)
class ForwardSettings:
    upstreams: tuple[str, ...] = ()
    stubs: tuple[tuple[str, tuple[str, ...]], ...] = ()
    policy: str = "random"
    read_timeout: float = 2.0
    max_concurrent: int = 1000
    max_fails: int = 2
    health_check: float = 0.5
    udp_size: int = 1232
    sockets: int = 8


class Upstream:
    """One upstream server and its health, as the policy sees it."""

    def __init__(self, address: str) -> None:
        self.host, self.port = split_hostport(address, 53)
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.name = f"{host}:{self.port}"
        self.family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self.addr = (self.host, self.port)
        self.fails = 0  # failures in a row
        self.looped = False  # it sends our queries back to us: never used
        self.checking = False  # a health check is running for it
        # rcode -> its reply durations (``ForwardStats.buckets``), found once per rcode
        self.durations: dict[int, list[float]] = {}

    def healthy(self, max_fails: int) -> bool:
        return self.fails < max_fails


class Pool:
    def __init__(self, domain: Labels, upstreams: list[Upstream], policy: str) -> None:
        self.domain = domain
        self.upstreams = upstreams
        self.policy = policy
        self._turn = 0

    def order(self, max_fails: int) -> list[Upstream]:
        """The upstreams to try, in turn: healthy ones in policy order, then failing ones."""
        if len(self.upstreams) == 1:  # the usual case: nothing to order or filter
            return [] if self.upstreams[0].looped else [self.upstreams[0]]
        usable = [u for u in self.upstreams if not u.looped]
        if len(usable) < 2:
            return usable  # nothing to order
        healthy = [u for u in usable if u.healthy(max_fails)]
        if self.policy == "random":
            random.shuffle(healthy)
        elif self.policy == "round_robin":
            self._turn += 1
            if healthy:
                k = self._turn % len(healthy)
                healthy = healthy[k:] + healthy[:k]
        return healthy + [u for u in usable if not u.healthy(max_fails)]


def pools(settings: ForwardSettings) -> list[Pool]:
    """The default pool and one per stub domain, most specific domain first."""
    out = [Pool((), [Upstream(a) for a in settings.upstreams], settings.policy)]
    for domain, addresses in settings.stubs:
        labels = tuple(domain.rstrip(".").lower().split(".")) if domain.strip(".") else ()
        out.append(Pool(labels, [Upstream(a) for a in addresses], settings.policy))
    out.sort(key=lambda p: len(p.domain), reverse=True)
    return out


def pool_for(candidates: list[Pool], labels: Labels) -> Pool | None:
    for pool in candidates:
        n = len(pool.domain)
        if pool.upstreams and (not n or labels[len(labels) - n :] == pool.domain):
            return pool
    return None


class Verdict(Enum):
    ANSWER = "answer"  # the reply is the answer
    NEXT = "next"  # try the next upstream
    RETRY_TCP = "retry_tcp"  # ask the same upstream again over TCP


def judge(rcode: int, truncated: bool, tcp: bool) -> Verdict:
    """What an upstream's reply means for the question."""
    if rcode in (SERVFAIL, REFUSED):
        return Verdict.NEXT
    if truncated and not tcp:
        return Verdict.RETRY_TCP
    return Verdict.ANSWER


def failed(up: Upstream, max_fails: int) -> bool:
    """Count a failure (timeout, socket error, bad reply); True when a health check must
    start for the upstream now."""
    up.fails += 1
    if up.fails >= max_fails and not up.checking:
        up.checking = True
        return True
    return False


def give_up(stale: Outcome | None, network: bool) -> Outcome:
    """Every upstream failed: serve stale if allowed, else SERVFAIL, saying whether the
    network failed us (a socket error) or no upstream answered usefully in time."""
    if stale is not None:
        return stale
    return Outcome(None, SERVFAIL, ede=EDE_NETWORK_ERROR if network
                   else EDE_NO_REACHABLE_AUTHORITY)


class Attempt:
    """One question on its way through the upstreams of a pool."""

    __slots__ = ("body", "deadline", "done", "key", "network", "qid", "qname", "raw", "sock",
                 "stale", "started", "tcp", "tries", "upstream")

    def __init__(self, key: Key, qname: bytes, body: bytes, tcp: bool, tries: list[Upstream],
                 stale: Outcome | None, done: Done) -> None:
        self.key, self.qname, self.body, self.tcp = key, qname, body, tcp  # body: after the ID
        self.tries, self.stale, self.done = tries, stale, done
        self.upstream: Upstream | None = None
        self.sock: object = None  # the UDP socket it was sent on (``sockets.UdpSocket``)
        self.qid = 0
        self.deadline = 0.0
        self.started = 0.0
        self.network = False  # an upstream failed with a socket error
        self.raw: RawRelay | None = None  # takes a plain reply's bytes (``forward.raw``)

    def same_question(self, resp: Response) -> bool:
        """The reply is to our question: name (in any case), type and class."""
        return (resp.qtype == self.key.qtype and resp.qclass == self.key.qclass
                and (resp.qname == self.qname or resp.qname.lower() == self.qname.lower()))
