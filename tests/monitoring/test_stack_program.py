"""The monitoring stack run as a program, the way scripts/dashboard-snapshot runs it: one JSON
line says where skyserve and Prometheus answer, both do, and closing stdin stops it all."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import dns.message
import dns.query
import dns.rcode
import pytest

from tests.support.monitoring_stack import LOAD_MIX
from tests.support.netutil import http_get
from tests.support.procutil import REPO_ROOT, repo_python_env

pytestmark = pytest.mark.e2e


def test_the_stack_program_answers_then_stops_when_stdin_closes() -> None:
    env = repo_python_env()
    env["PYTHONPATH"] += os.pathsep + str(REPO_ROOT / "scripts")  # kubefake, as pytest has it
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.monitoring_stack", "--max-seconds", "90"],
        cwd=REPO_ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        where = json.loads(proc.stdout.readline())
        assert where["queries"] == list(LOAD_MIX)
        name, rdtype = LOAD_MIX[0].split()
        reply = dns.query.udp(dns.message.make_query(name, rdtype), "127.0.0.1",
                              port=where["dns_port"], timeout=5)
        assert reply.rcode() == dns.rcode.NOERROR and reply.answer
        assert http_get(where["prometheus_port"], "/-/ready", timeout=5)[0] == 200
    finally:
        proc.stdin.close()
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.terminate()  # SIGTERM unwinds the stack, which stops what it started
            proc.wait(timeout=60)
            raise
    assert code == 0
    with pytest.raises(OSError):
        http_get(where["prometheus_port"], "/-/ready", timeout=2)
