"""Response rate limiting's accounting: one token bucket per (client prefix, response kind).

As in knot's mod-rrl: each bucket earns ``rate`` credits a second and holds at most
``rate x window`` (the burst an idle client may spend at once), and each response sent
spends one. A bucket without a whole credit is limited; limited responses spend nothing,
so a prefix that floods still gets about ``rate`` full answers a second and nothing more,
whatever it sends. (BIND debits limited responses too, so a flooding prefix gets none until
it has been quiet; that also starves the real client behind a forged source.) Of the
limited responses every ``slip``-th is sent truncated (TC, no records: a real client
retries over TCP, a spoofed victim gets no more bytes than were sent in its name) and the
rest are dropped; slip 0 drops them all.

The table is bounded: least recently used buckets go first.
"""

from __future__ import annotations

import socket
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from enum import Enum


class Verdict(Enum):
    SEND = "send"
    SLIP = "slip"
    DROP = "drop"


@dataclass(frozen=True, slots=True)
class RrlSettings:
    rate: int  # responses a second per bucket
    slip: int = 2
    window: float = 1.0  # seconds of credit a bucket holds
    ipv4_prefix: int = 24
    ipv6_prefix: int = 56
    log_only: bool = False
    table_size: int = 20_000


class Buckets:
    def __init__(self, settings: RrlSettings) -> None:
        self.settings = settings
        self.rate = float(settings.rate)
        self.capacity = max(1.0, settings.window * settings.rate)
        # key -> [balance, last seen (monotonic), limited responses so far]
        self._table: OrderedDict[Hashable, list[float]] = OrderedDict()
        self._shift4 = 32 - settings.ipv4_prefix
        self._shift6 = 128 - settings.ipv6_prefix

    def prefix(self, ip: str) -> tuple[int, int]:
        """The client's prefix: (address family bits, network number)."""
        if ":" in ip:
            return 6, int.from_bytes(socket.inet_pton(socket.AF_INET6, ip), "big") >> self._shift6
        return 4, int.from_bytes(socket.inet_aton(ip), "big") >> self._shift4

    def account(self, key: Hashable, now: float) -> tuple[Verdict, bool]:
        """Spend one response from ``key``'s bucket: the verdict, and whether this is the
        bucket's first limited response (worth one log line)."""
        table = self._table
        entry = table.get(key)
        if entry is None:
            if len(table) >= self.settings.table_size:
                table.popitem(last=False)
            entry = table[key] = [self.capacity, now, 0.0]
        else:
            table.move_to_end(key)
            entry[0] = min(self.capacity, entry[0] + (now - entry[1]) * self.rate)
            entry[1] = now
        if entry[0] >= 1.0:
            entry[0] -= 1.0
            entry[2] = 0.0
            return Verdict.SEND, False
        entry[2] += 1.0
        slip = self.settings.slip
        verdict = Verdict.SLIP if slip and entry[2] % slip == 0 else Verdict.DROP
        return verdict, entry[2] == 1.0

    def __len__(self) -> int:
        return len(self._table)
