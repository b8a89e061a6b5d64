"""Background loops: the one way both programs run a thread that waits, retries and stops.

The etcd mirror, the bridge's watchers, its reconciler and its leader election each run a
blocking loop in a daemon thread. ``Background`` gives them the same three things: a stop
request that cuts any wait short, ``pause`` (a sleep that ends the loop when a stop is
requested), and ``retrying`` (tenacity's exponential back-off, sleeping with ``pause``).
A loop ends by returning, or by ``Stopped`` raised from ``pause`` or ``check``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

from tenacity import Retrying, retry_if_exception_type
from tenacity.wait import wait_base


class Stopped(BaseException):
    """Raised inside a background loop to leave it: a stop was requested (not an error)."""


class Background:
    def __init__(self, name: str, loop: Callable[[], None]) -> None:
        self._loop = loop
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float, wake: Callable[[], None] | None = None) -> None:
        """Ask the loop to stop, ``wake`` it from a blocking call, and wait for it."""
        self._stop.set()
        if wake is not None:
            wake()
        self._thread.join(timeout)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def check(self) -> None:
        """Leave the loop now if a stop was requested."""
        if self._stop.is_set():
            raise Stopped

    def pause(self, seconds: float) -> None:
        """Sleep, unless a stop is requested first; then leave the loop."""
        if self._stop.wait(seconds):
            raise Stopped

    def retrying(self, retry_on: type[BaseException] | tuple[type[BaseException], ...],
                 wait: wait_base, before_sleep: Callable[[Any], None] | None = None) -> Retrying:
        """Retry forever on ``retry_on``, waiting ``wait`` (with ``pause``) between tries."""
        return Retrying(retry=retry_if_exception_type(retry_on), wait=wait, sleep=self.pause,
                        before_sleep=before_sleep, reraise=True)

    def _main(self) -> None:
        with contextlib.suppress(Stopped):
            self._loop()
