"""pytest plugin: a test that starts a process must be marked ``e2e``.

``scripts/test -m "not e2e"`` is the fast unit-only run; it stays fast only while every test
that starts etcd, skyserve, kube2etcd, dig, openssl, ... carries the marker. Two checks:

* a test whose fixtures need etcd (anything depending on ``etcd_binary``) must be marked,
  even when the session's etcd is already running and this test starts nothing itself;
* while an unmarked test runs (setup, call and teardown), an audit hook records every
  process started; the phase then fails, naming what was started.
"""

from __future__ import annotations

import sys
from collections.abc import Generator
from typing import Any

import pytest

MARK = "e2e"
ETCD_FIXTURE = "etcd_binary"  # every etcd-backed fixture depends on it
_SPAWN_EVENTS = frozenset({"subprocess.Popen", "os.system", "os.posix_spawn", "os.exec",
                           "os.spawn", "os.fork", "os.forkpty"})

# The processes started during the current unmarked test phase; None while spawning is
# allowed. Audit hooks cannot be removed, so one hook consults this for the whole session.
_spawned: list[str] | None = None


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _spawned is not None and event in _SPAWN_EVENTS:
        _spawned.append(f"{event} {args[1] if len(args) > 1 else args!r}")


def pytest_configure(config: pytest.Config) -> None:
    sys.addaudithook(_audit)


def _guarded(item: pytest.Item, phase: str) -> Generator[None, object, object]:
    """Run one phase of an unmarked test with the spawn recorder on; fail if it spawned."""
    global _spawned
    if item.get_closest_marker(MARK) is not None:
        return (yield)
    _spawned = []
    try:
        result = yield
    finally:
        spawned, _spawned = _spawned, None
    if spawned:
        pytest.fail(f"{item.nodeid} is not marked @pytest.mark.{MARK} but started a process "
                    f"during {phase}: {spawned[0]}", pytrace=False)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, object, object]:
    fixtures = getattr(item, "fixturenames", ())
    if ETCD_FIXTURE in fixtures and item.get_closest_marker(MARK) is None:
        pytest.fail(f"{item.nodeid} uses etcd ({ETCD_FIXTURE} among its fixtures) but is not "
                    f"marked @pytest.mark.{MARK}", pytrace=False)
    return (yield from _guarded(item, "setup"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from _guarded(item, "call"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from _guarded(item, "teardown"))
