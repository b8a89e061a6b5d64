"""The event loop skyserve runs on: asyncio's own, with a gate another thread can share.

Answering a cached or direct UDP query takes a few microseconds; waking the event loop for
it (epoll, one ``_run_once`` pass, the callback, a last ``recvfrom`` that finds nothing)
takes more than that again when queries come one at a time, as they do at any rate short of
saturation. So the UDP socket is read by a thread of its own in a blocking ``recvfrom``
(``udp.UdpServer``), which answers what it can itself and passes the rest to the loop.

The gate is what makes that safe: one lock, held by the loop's thread at all times except
while it waits in ``select``, by the UDP thread while it answers, and by the etcd watch
thread while it applies a batch of changes (``app.LoopSink``: cheaper than waking the loop
for it). Everything the loop runs (forwarded replies, TCP, reloads) and those changes
therefore never interleave with an answer being made, exactly as when one thread did
everything; neither other thread calls into asyncio except through
``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import selectors
import threading
from collections.abc import Coroutine
from typing import Any


class GatedSelector(selectors.EpollSelector):
    """The loop's selector: lets go of the gate only while it waits for events."""

    def __init__(self, gate: threading.Lock) -> None:
        super().__init__()
        self.gate = gate

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        self.gate.release()
        try:
            events: list[tuple[selectors.SelectorKey, int]] = super().select(timeout)
            return events
        finally:
            self.gate.acquire()


class GatedLoop(asyncio.SelectorEventLoop):
    """An event loop whose thread holds ``gate`` except while it waits for events."""

    def __init__(self) -> None:
        self.gate = threading.Lock()
        self.gate.acquire()  # the loop's thread holds it from the start
        super().__init__(GatedSelector(self.gate))

    def close(self) -> None:
        super().close()
        if self.gate.locked():
            self.gate.release()


def run(main: Coroutine[Any, Any, int]) -> int:
    """``asyncio.run`` on a GatedLoop."""
    with asyncio.Runner(loop_factory=GatedLoop) as runner:
        return runner.run(main)
