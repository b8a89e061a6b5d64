"""What etcd must hold: the verdict of one probe on whether etcd still holds what the
bridge wrote, and what each key a write touches must hold first. No I/O.

An etcd can be replaced (another cluster behind the same address), restored from a backup
(its revisions go back in time) or wiped; the reconciler probes one key it wrote and asks
``lost_state`` whether to rewrite everything.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from skydns.etcd import Header, KeyValue


def lost_state(
    expected: str | None, found: KeyValue | None, header: Header, cluster_id: int | None,
    revision: int,
) -> str:
    """Why etcd no longer holds what the bridge wrote ("" if it does, as far as one can tell).

    ``expected`` is the value the bridge wrote at the probed key (None: nothing),
    ``found`` what etcd returned now; ``cluster_id`` and ``revision`` are what the bridge
    saw before. Returns "cluster" (another cluster answers), "revision" (etcd went back in
    time: restored, or replaced by a fresh one that has not caught up), or "missing".
    """
    if cluster_id is not None and header.cluster_id != cluster_id:
        return "cluster"
    if header.revision < revision:
        return "revision"
    if expected is not None and found is None:
        return "missing"
    return ""


class Expected(Mapping[str, str | None]):
    """What every key a pass writes must hold first: the bridge's value read back (or
    remembered), else nothing (None). A view for ``EtcdClient.apply``, which asks only
    about keys it writes; not a second dict of a million keys."""

    def __init__(self, owned: dict[str, str]) -> None:
        self._owned = owned

    def __getitem__(self, key: str) -> str | None:
        return self._owned.get(key)

    def __contains__(self, key: object) -> bool:
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self._owned)

    def __len__(self) -> int:
        return len(self._owned)
