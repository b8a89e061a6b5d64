"""scripts/run-local: it says skyserve answers only when its own skyserve does, names a
busy port, and a Ctrl-C stops everything at once and quietly."""

from __future__ import annotations

import contextlib
import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.run_local import ANSWERING, RunLocal

pytestmark = pytest.mark.e2e


@pytest.fixture
def run_local(tmp_path: Path) -> Iterator[RunLocal]:
    proc = RunLocal(tmp_path)
    yield proc
    proc.stop(15)


@contextlib.contextmanager
def held(port: int, kind: socket.SocketKind) -> Iterator[None]:
    with socket.socket(socket.AF_INET, kind) as sock:
        if kind == socket.SOCK_STREAM:  # a recent connection's TIME_WAIT must not stop us
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        if kind == socket.SOCK_STREAM:
            sock.listen()
        yield


class _Ready(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def another_ready(port: int) -> Iterator[None]:
    """Someone else's /ready answering 200 on the port run-local wants."""
    server = http.server.HTTPServer(("127.0.0.1", port), _Ready)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("variable", ["METRICS_PORT", "READY_PORT", "DNS_PORT", "ETCD_PORT"])
def test_a_port_in_use_is_named_and_stops_it(run_local: RunLocal, variable: str) -> None:
    port = run_local.ports[variable]
    holder = another_ready(port) if variable == "READY_PORT" else held(port, socket.SOCK_STREAM)
    with holder:
        run_local.start()
        assert run_local.wait_exit(60) == 1, run_local.log_tail()
    out = run_local.log_text()
    assert ANSWERING not in out
    assert f"port {port}" in out and variable in out, out


def test_a_skyserve_that_dies_is_reported(run_local: RunLocal) -> None:
    """A busy UDP port only skyserve's bind sees: run-local must notice its skyserve died."""
    port = run_local.ports["DNS_PORT"]
    with held(port, socket.SOCK_DGRAM):
        run_local.start()
        assert run_local.wait_exit(60) == 1, run_local.log_tail()
    out = run_local.log_text()
    assert ANSWERING not in out
    assert (f"run-local: skyserve exited with status 1: skyserve: error: cannot listen for "
            f"DNS (--dns-addr) on UDP 127.0.0.1:{port}: Address already in use") in out, out


def test_ctrl_c_stops_everything_at_once_and_quietly(run_local: RunLocal) -> None:
    run_local.start()
    assert run_local.wait_answering_or_exit(), run_local.log_tail()
    run_local.ctrl_c()
    assert run_local.wait_exit(10) == 0, run_local.log_tail()
    out = run_local.log_text()
    assert "without the lameduck" in out and out.rstrip().endswith("run-local: stopped"), out
    assert "WARNING" not in out and "ERROR" not in out, out
