"""scripts/bench-amplification's byte accounting, against a tiny UDP responder in a thread:
the benchmark itself runs servers and is no test."""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from benchkit.ampzone import KINDS
from benchkit.flood import Client, bound_sockets, flood, query_wire

ROOT = Path(__file__).resolve().parents[1]


def respond(sock: socket.socket, stop: threading.Event) -> None:
    """ANY: a full 300-byte reply; TXT: header-only with TC; DNSKEY: nothing."""
    sock.settimeout(0.05)
    while not stop.is_set():
        try:
            data, peer = sock.recvfrom(512)
        except TimeoutError:
            continue
        qid, qtype = struct.unpack(">H", data[:2])[0], struct.unpack(">H", data[-15:-13])[0]
        if qtype == 255:
            sock.sendto(struct.pack(">6H", qid, 0x8400, 1, 1, 0, 0).ljust(300, b"\0"), peer)
        elif qtype == 16:
            sock.sendto(struct.pack(">6H", qid, 0x8600, 1, 0, 0, 0), peer)


def test_bytes_and_reply_classes_are_counted_per_kind() -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    stop = threading.Event()
    thread = threading.Thread(target=respond, args=(server, stop))
    thread.start()
    try:
        attack = Client(bound_sockets([f"127.66.250.{i}" for i in (1, 2, 3, 4)]), KINDS, 300)
        legit = Client(bound_sockets(["127.77.250.1"]), KINDS, 30)
        res = flood(server.getsockname()[1], attack, legit, 0.5, 0.25, 0.3)
    finally:
        stop.set()
        thread.join()
        server.close()
    any_, txt, key = (res["attack"][k.label] for k in KINDS)
    assert any_["sent"] + txt["sent"] + key["sent"] == 150
    assert any_["query_bytes"] == len(query_wire(0, KINDS[0]))
    assert (any_["full_pct"], any_["tc_pct"], any_["none_pct"]) == (100, 0, 0)
    assert any_["amplification"] == pytest.approx(300 / any_["query_bytes"])
    assert (txt["full_pct"], txt["tc_pct"], txt["none_pct"]) == (0, 100, 0)
    assert txt["amplification"] == pytest.approx(12 / txt["query_bytes"])
    assert txt["beyond_amplification"] == txt["amplification"]
    assert any_["beyond_amplification"] == 0
    assert (key["full_pct"], key["none_pct"], key["amplification"]) == (0, 100, 0)
    assert any_["full_per_s"] == pytest.approx(any_["sent"] / 0.5)
    assert any_["steady_full_per_s"] == pytest.approx(any_["sent"] / 2 / 0.25, rel=0.1)
    assert sum(m["sent"] for m in res["legit"].values()) == 15


@pytest.mark.e2e  # runs the script
def test_help_runs_without_starting_anything() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench-amplification"),
                          "--help"], capture_output=True, text=True, timeout=30, check=True)
    assert "--rrl-rate" in out.stdout and "--rrl-slip" in out.stdout
