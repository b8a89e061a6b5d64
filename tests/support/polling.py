"""wait_for(): poll a condition until it holds or time runs out.

Tests against real processes (etcd watches, skyserve reloads) cannot know when a change
arrives, only how long it may take; every such test asks the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["wait_for"]


def wait_for(check: Callable[[], bool], timeout: float = 5.0, step: float = 0.02) -> bool:
    """True as soon as `check()` is; after `timeout` seconds, whatever a last `check()` says.

    Returns a bool rather than raising, so the caller's assert carries its own message."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(step)
    return check()
