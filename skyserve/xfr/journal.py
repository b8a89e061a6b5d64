"""Serials, and the bounded journal of zone versions that IXFR answers from.

The serial is the etcd revision plus ``--serial-offset``, modulo 2^32, compared as RFC 1982
says. The revision is etcd's cluster-wide counter, so every replica serving the same etcd
gives the same serial for the same data, and it only grows — until etcd is restored from a
snapshot into a new cluster, which restarts it lower (docs/transfers.md: raise
``--serial-offset`` then; a client whose serial is newer than ours is logged and counted).

A version is the zone's content from the revision it was built at until the revision of
the first change after it, with the difference from the version before. An IXFR from a
serial inside a version's range is that version's differences up to now, condensed into
one. Older serials, or a journal started afresh (start-up, a full reload of etcd after a
compaction), get the whole zone.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from ..wire.rr import RR

MAX_VERSIONS = 64
MAX_RECORDS = 200_000  # RRs held in differences, over all versions


def serial(revision: int, offset: int) -> int:
    return (revision + offset) & 0xFFFFFFFF


def newer(a: int, b: int) -> bool:
    """RFC 1982: is serial ``a`` greater than serial ``b``?"""
    return 0 < (a - b) & 0xFFFFFFFF < 0x80000000


@dataclass(slots=True)
class Version:
    start: int  # the revision it was built at
    until: int | None  # the revision of the first change after it; None while current
    deleted: tuple[RR, ...] = ()  # from the version before
    added: tuple[RR, ...] = ()


class Journal:
    def __init__(self, max_versions: int = MAX_VERSIONS, max_records: int = MAX_RECORDS) -> None:
        self.max_versions = max_versions
        self.max_records = max_records
        self.versions: deque[Version] = deque()
        self.records = 0

    def reset(self, revision: int) -> None:
        """A new baseline: nothing older can be answered incrementally."""
        self.versions = deque([Version(revision, None)])
        self.records = 0

    def add(self, first_change: int, revision: int, deleted: list[RR], added: list[RR]) -> None:
        """The zone changed: from ``first_change`` on, it is the new version."""
        if self.versions:
            self.versions[-1].until = first_change
        self.versions.append(Version(revision, None, tuple(deleted), tuple(added)))
        self.records += len(deleted) + len(added)
        while len(self.versions) > 1 and (len(self.versions) > self.max_versions
                                          or self.records > self.max_records):
            self.versions.popleft()
            oldest = self.versions[0]
            self.records -= len(oldest.deleted) + len(oldest.added)
            oldest.deleted = oldest.added = ()  # nothing before it to differ from

    def find(self, client: int, offset: int, current: int) -> int | None:
        """The version a client's serial is in (an index), or None when unknown."""
        for i, v in enumerate(self.versions):
            low = serial(v.start, offset)
            high = serial(v.until if v.until is not None else current + 1, offset)
            if (client - low) & 0xFFFFFFFF < (high - low) & 0xFFFFFFFF:
                return i
        return None

    def since(self, index: int) -> tuple[list[RR], list[RR]]:
        """Everything deleted and added after version ``index``, as one difference."""
        deleted: dict[RR, None] = {}
        added: dict[RR, None] = {}
        for v in list(self.versions)[index + 1 :]:
            for rr in v.deleted:
                if rr in added:
                    del added[rr]
                else:
                    deleted[rr] = None
            for rr in v.added:
                if rr in deleted:
                    del deleted[rr]
                else:
                    added[rr] = None
        return list(deleted), list(added)
