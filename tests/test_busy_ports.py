"""A port already in use stops the program with a message naming the listener and address.

A bare "[Errno 98] Address already in use" does not say which of five ports is taken.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.bridge_proc import BridgeProcess
from tests.support.kubeconfig import write_kubeconfig
from tests.support.netutil import free_port
from tests.support.polling import wait_for
from tests.support.skyserve_proc import SkyserveProcess

pytestmark = pytest.mark.e2e

HOST = "127.0.0.1"


@contextlib.contextmanager
def occupied(port: int, kind: socket.SocketKind) -> Iterator[socket.socket]:
    """A socket holding the port (listening, for TCP) until the test ends."""
    sock = socket.socket(socket.AF_INET, kind)
    if kind == socket.SOCK_STREAM:  # a recent connection's TIME_WAIT must not stop us; not
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # UDP: it would share
    sock.bind((HOST, port))
    if kind == socket.SOCK_STREAM:
        sock.listen()
    try:
        yield sock
    finally:
        sock.close()


def exit_message(proc: SkyserveProcess | BridgeProcess) -> tuple[int | None, str]:
    """Start the process and wait for it to give up; its exit status and output."""
    proc.start()
    try:
        assert wait_for(lambda: not proc.running, 30, 0.05), "it did not stop"
        return proc.returncode, proc.log_text()
    finally:
        proc.stop()


@pytest.mark.parametrize("listener, kind, name", [
    ("dns", socket.SOCK_DGRAM, "DNS (--dns-addr) on UDP"),
    ("dns", socket.SOCK_STREAM, "DNS (--dns-addr) on TCP"),
    ("health", socket.SOCK_STREAM, "health (--health-addr) on TCP"),
    ("ready", socket.SOCK_STREAM, "ready (--ready-addr) on TCP"),
    ("metrics", socket.SOCK_STREAM, "metrics (--metrics-addr) on TCP"),
])
@pytest.mark.parametrize("workers", ["1", "2"])
def test_skyserve_names_the_busy_listener(tmp_path: Path, listener: str,
                                          kind: socket.SocketKind, name: str,
                                          workers: str) -> None:
    proc = SkyserveProcess(f"http://{HOST}:{free_port()}", ["skydns.local."], log_dir=tmp_path,
                           extra_args=["--workers", workers])
    port = getattr(proc, f"{listener}_port")
    with occupied(port, kind):
        code, text = exit_message(proc)
    assert code == 1, text
    assert f"skyserve: error: cannot listen for {name} {HOST}:{port}: Address already in use" \
        in text, text
    assert "Traceback" not in text


@pytest.mark.parametrize("listener, name", [
    ("health", "health (--health-addr)"), ("metrics", "metrics (--metrics-addr)"),
])
def test_kube2etcd_names_the_busy_listener(tmp_path: Path, listener: str, name: str) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", f"http://{HOST}:{free_port()}")
    bridge = BridgeProcess(kubeconfig, f"http://{HOST}:{free_port()}", "/skydns", tmp_path)
    port = getattr(bridge, f"{listener}_port")
    with occupied(port, socket.SOCK_STREAM):
        code, text = exit_message(bridge)
    assert code == 1, text
    assert f"kube2etcd: error: cannot listen for {name} on TCP {HOST}:{port}: " \
        "Address already in use" in text, text
