"""Upstream health: a failing upstream is probed with ``. NS`` every ``health_check``
seconds until it answers, and at start-up each upstream is sent a random name that, if it
comes back to us, marks the upstream as a forwarding loop (CoreDNS's ``loop`` plugin).

Both run on the event loop, away from the query path; the forwarder only starts them and
asks ``probe_seen`` while loop probes are out.
"""

from __future__ import annotations

import asyncio
import logging
import os

from skydns.record import Labels

from ..stats import ForwardStats
from ..wire import constants as T
from ..wire.constants import RD
from ..wire.query import encode_name
from ..wire.response import build_query
from .policy import ForwardSettings, Pool, Upstream
from .sockets import probe

log = logging.getLogger(__name__)


class Health:
    def __init__(self, settings: ForwardSettings, stats: ForwardStats,
                 pools: list[Pool]) -> None:
        self.settings = settings
        self.stats = stats
        self.pools = pools
        self.probes: dict[Labels, Upstream] = {}  # loop probes out, by the name sent

    def start_check(self, up: Upstream) -> None:
        """Probe a failing upstream until it answers (``policy`` marks it as checked)."""
        asyncio.get_running_loop().create_task(self._check(up))

    async def _check(self, up: Upstream) -> None:
        query = build_query(0, b"\x00", T.NS, T.CLASS_IN, flags=0, do=False, udp_size=512)
        log.warning("upstream %s is failing; health-checking it", up.name)
        try:
            while not up.healthy(self.settings.max_fails):
                await asyncio.sleep(self.settings.health_check)
                if await probe(up, query, self.settings.read_timeout):
                    up.fails = 0
                    log.info("upstream %s is healthy again", up.name)
                else:
                    self.stats.counters["healthcheck_failures"] += 1
                    self.stats.healthcheck_failures[up.name] += 1
        finally:
            up.checking = False

    async def detect_loops(self) -> list[str]:
        """Send each upstream a random name; if it comes back to us, that upstream loops."""
        waits = []
        for pool in self.pools:
            for up in pool.upstreams:
                name = (os.urandom(8).hex(), os.urandom(4).hex(), "skyserve-loop-probe")
                self.probes[name] = up
                query = build_query(0, encode_name(name), 13, T.CLASS_IN, flags=RD, do=False,
                                    udp_size=512)
                waits.append(probe(up, query, self.settings.read_timeout))
        if waits:
            await asyncio.gather(*waits)
        looped = sorted({u.name for u in self.probes.values() if u.looped})
        self.probes.clear()
        return looped

    def probe_seen(self, labels: Labels) -> bool:
        """Called for every incoming query during loop detection: is it our own probe?"""
        up = self.probes.get(labels)
        if up is None:
            return False
        if not up.looped:
            up.looped = True
            log.error("forwarding loop: upstream %s sends our queries back to us; "
                      "not forwarding to it", up.name)
        return True
