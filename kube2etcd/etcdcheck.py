"""Whether etcd still holds what the bridge wrote: the verdict of one probe, no I/O.

An etcd can be replaced (another cluster behind the same address), restored from a backup
(its revisions go back in time) or wiped; the reconciler probes one key it wrote and asks
``lost_state`` whether to rewrite everything.
"""

from __future__ import annotations

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
