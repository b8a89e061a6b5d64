"""How the mirror's data reaches the pipeline (``app.LoopSink``), on a real gated loop."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, cast

import pytest

from skyserve.app import App, LoopSink
from skyserve.eventloop import GatedLoop
from skyserve.index import Change, Index

BUSY = 10.0  # seconds the loop waits, at most, for something that should come at once


class Recording:
    """A pipeline stand-in: which thread handed it what, in order."""

    def __init__(self, gate: threading.Lock) -> None:
        self.gate = gate
        self.calls: list[tuple[str, int, str, bool]] = []

    def load(self, index: Index, revision: int) -> None:
        self._note("load", revision)

    def apply(self, changes: list[Change], revision: int) -> None:
        self._note("apply", revision)

    def _note(self, what: str, revision: int) -> None:
        self.calls.append((what, revision, threading.current_thread().name, self.gate.locked()))


class StandIn:
    """The parts of ``App`` the sink uses."""

    def __init__(self, gate: threading.Lock, primary: object | None = None) -> None:
        self.pipeline = Recording(gate)
        self.primary = primary
        self.stopping = False


def run_on_gated_loop(body: Any) -> None:
    loop = GatedLoop()
    try:
        loop.run_until_complete(body(loop))
    finally:
        loop.close()


def test_changes_are_applied_by_the_watch_thread_holding_the_gate() -> None:
    """Waking the loop's thread for every watch response cost a wake-up and a turn at the
    GIL taken from the thread answering queries."""
    async def body(loop: GatedLoop) -> None:
        app = StandIn(loop.gate)
        sink = LoopSink(loop, cast(App, app))
        watch = threading.Thread(target=sink.changed, args=([], 7), name="watch")
        watch.start()
        while watch.is_alive():  # waiting in select: the gate is free
            await asyncio.sleep(0.01)
        assert app.pipeline.calls == [("apply", 7, "watch", True)]

    run_on_gated_loop(body)


@pytest.mark.parametrize("pending", ["a load", "zone transfers"])
def test_changes_wait_for_the_loop_behind_a_load_or_with_transfers(pending: str) -> None:
    """A change applied before a load handed over earlier would be lost when that load is
    swapped in; NOTIFYs are scheduled on the loop. Either way the change goes to the loop,
    in order, without waiting for the gate the busy loop holds."""
    async def body(loop: GatedLoop) -> None:
        app = StandIn(loop.gate, primary=object() if pending == "zone transfers" else None)
        sink = LoopSink(loop, cast(App, app))
        returned = threading.Event()

        def mirror() -> None:
            if pending == "a load":
                sink.loaded(Index(), 5)
            sink.changed([], 6)
            returned.set()

        threading.Thread(target=mirror, name="watch").start()
        came_back = returned.wait(BUSY)  # the loop's thread is busy: it holds the gate
        await asyncio.sleep(0.05)  # now the loop runs what was handed to it
        assert came_back
        loaded = [("load", 5, "MainThread", True)] if pending == "a load" else []
        assert app.pipeline.calls == [*loaded, ("apply", 6, "MainThread", True)]

    run_on_gated_loop(body)
