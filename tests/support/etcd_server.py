"""Run real etcd processes (single node or an N-member loopback cluster) for tests."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import etcd3
import etcd3.exceptions
import grpc

from tests.support.netutil import free_port, http_get
from tests.support.procutil import LoggedProcess

__all__ = [
    "EtcdNotFoundError",
    "EtcdServer",
    "find_etcd_binary",
    "find_etcdctl_binary",
    "make_client",
    "start_cluster",
    "started",
]

_T = TypeVar("_T")
_Server = TypeVar("_Server", bound="EtcdServer")

HOST = "127.0.0.1"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0
OP_RETRY = 10.0

# Errors after which an operation is worth retrying with a fresh client
# (etcd restarting, leader election, paused member...).
_TRANSIENT_CODES = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
_TRANSIENT_EXC: tuple[type[BaseException], ...] = (
    etcd3.exceptions.ConnectionFailedError,
    etcd3.exceptions.ConnectionTimeoutError,
    etcd3.exceptions.NoServerAvailableError,
    etcd3.exceptions.InternalServerError,
)


class EtcdNotFoundError(RuntimeError):
    """No etcd binary was found ($ETCD_BIN / PATH)."""


def find_etcd_binary() -> str | None:
    """Path of the etcd binary: $ETCD_BIN first, then `etcd` on PATH; None if absent."""
    env = os.environ.get("ETCD_BIN")
    if env:
        found = shutil.which(env)
        if found:
            return found
    return shutil.which("etcd")


def find_etcdctl_binary(etcd_binary: str | None = None) -> str | None:
    """Path of etcdctl: $ETCDCTL_BIN, next to the etcd binary, then PATH."""
    env = os.environ.get("ETCDCTL_BIN")
    if env and (found := shutil.which(env)):
        return found
    if etcd_binary:
        sibling = Path(etcd_binary).with_name("etcdctl")
        if sibling.is_file() and os.access(sibling, os.X_OK):
            return str(sibling)
    return shutil.which("etcdctl")


def make_client(
    endpoints: Sequence[tuple[str, int]], timeout: float = 5.0
) -> etcd3.MultiEndpointEtcd3Client:
    """etcd3 client over plain-HTTP (host, port) endpoints with fast failover.

    time_retry=0.5 so an endpoint is retried quickly after etcd restarts (the
    library default keeps it blacklisted for 300 s).
    """
    eps = [etcd3.Endpoint(h, p, secure=False, time_retry=0.5) for h, p in endpoints]
    return etcd3.MultiEndpointEtcd3Client(eps, failover=True, timeout=timeout)


def _default_base_parent() -> str | None:
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK):
        return str(shm)
    return None  # tempfile default


class EtcdServer(LoggedProcess):
    """One etcd process on 127.0.0.1 (optionally a member of a loopback cluster).

    Files live under `base_dir` (in /dev/shm when available): the etcd data dir
    is `base_dir/data`, the combined stdout/stderr log is `base_dir/etcd.log`.
    Ports and data dir stay the same across stop()/start()/restart().
    """

    def __init__(
        self,
        name: str = "etcd0",
        *,
        binary: str | None = None,
        client_port: int | None = None,
        peer_port: int | None = None,
        base_dir: str | Path | None = None,
        initial_cluster: str | None = None,
        cluster_token: str | None = None,
        extra_args: Sequence[str] = (),
        client_timeout: float = 5.0,
    ) -> None:
        resolved = binary or find_etcd_binary()
        if resolved is None:
            raise EtcdNotFoundError("etcd binary not found: set $ETCD_BIN or put etcd on PATH")
        self.binary: str = resolved
        self.name = name
        self.client_port: int = client_port if client_port is not None else free_port()
        self.peer_port: int = peer_port if peer_port is not None else free_port()
        if base_dir is None:
            base_dir = tempfile.mkdtemp(prefix=f"etcd-{name}-", dir=_default_base_parent())
        self.base_dir = Path(base_dir)
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.base_dir / "data"
        super().__init__(self.base_dir / "etcd.log")
        self.initial_cluster = initial_cluster or f"{name}={self.peer_url}"
        self.cluster_token = cluster_token or f"tok-{uuid.uuid4().hex[:12]}"
        self.extra_args = list(extra_args)
        self.client_timeout = client_timeout
        self._paused = False
        self._client: etcd3.MultiEndpointEtcd3Client | None = None

    # ------------------------------------------------------------------ urls
    @property
    def endpoint(self) -> str:
        """Client URL, e.g. "http://127.0.0.1:23456"."""
        return f"http://{HOST}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{HOST}:{self.peer_port}"

    @property
    def paused(self) -> bool:
        return self._paused

    def argv(self) -> list[str]:
        return [
            self.binary,
            "--name", self.name,
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", self.endpoint,
            "--advertise-client-urls", self.endpoint,
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", self.initial_cluster,
            "--initial-cluster-token", self.cluster_token,
            "--initial-cluster-state", "new",
            "--logger", "zap",
            "--log-outputs", "stderr",
            *self.extra_args,
        ]  # fmt: skip

    # ------------------------------------------------------------ lifecycle
    def launch(self) -> None:
        """Spawn etcd without waiting for health (cluster members need each other)."""
        if self.running:
            raise RuntimeError(f"etcd {self.name} already running (pid {self.pid})")
        self._paused = False
        self._spawn(self.argv(), header=f"\n=== launch {time.strftime('%H:%M:%S')} ===\n")

    def wait_healthy(self, timeout: float = START_TIMEOUT) -> None:
        """Poll /health until {"health":"true"}; raise RuntimeError on timeout/exit."""
        deadline = time.monotonic() + timeout
        while True:
            proc = self._proc
            if proc is None:
                raise RuntimeError(f"etcd {self.name} was not started")
            rc = proc.poll()
            if rc is not None:
                raise RuntimeError(
                    f"etcd {self.name} exited with {rc} during startup:\n{self.log_tail()}"
                )
            if self.is_healthy(timeout=1.0):
                return
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"etcd {self.name} not healthy after {timeout:.0f}s:\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start etcd and wait until /health reports healthy (15 s deadline)."""
        self.launch()
        try:
            self.wait_healthy(timeout)
        except BaseException:
            self.kill()
            raise

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM our etcd, SIGKILL after `timeout` seconds; returns the exit code."""
        if self._proc is None:
            return None
        self._reset_client()
        code = self._terminate(timeout, kill_wait=timeout, resume=self._paused)
        self._paused = False
        return code

    def kill(self) -> int | None:
        """SIGKILL our etcd (simulated crash) and reap it; returns the exit code."""
        if self._proc is None:
            return None
        self._reset_client()
        code = self._kill(wait=STOP_TIMEOUT)
        self._paused = False
        return code

    def restart(self, timeout: float = START_TIMEOUT) -> None:
        """stop() then start() on the same data dir and ports (revision survives)."""
        self.stop()
        self.start(timeout)

    def pause(self) -> None:
        """SIGSTOP etcd: it keeps its sockets but answers nothing (a frozen etcd). Returns
        once every thread has stopped: a signal is delivered asynchronously, and on a busy
        machine a thread still running could answer a request sent right after."""
        self._signal_running(signal.SIGSTOP)
        self._paused = True
        assert self._proc is not None
        deadline = time.monotonic() + 10
        while not _all_stopped(self._proc.pid):
            if time.monotonic() > deadline:
                raise RuntimeError(f"etcd {self.name} did not stop on SIGSTOP")
            time.sleep(0.005)

    def resume(self) -> None:
        """SIGCONT a paused etcd."""
        self._signal_running(signal.SIGCONT)
        self._paused = False

    def _signal_running(self, sig: signal.Signals) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            raise RuntimeError(f"etcd {self.name} is not running")
        os.kill(proc.pid, sig)

    def cleanup(self) -> None:
        """Kill etcd if still running and remove base_dir (data dir and log)."""
        if self.running:
            self.kill()
        self._reset_client()
        self._close_log()
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> EtcdServer:
        if not self.running:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def __repr__(self) -> str:
        return f"EtcdServer(name={self.name!r}, endpoint={self.endpoint!r}, pid={self.pid})"

    # -------------------------------------------------------------- probing
    def is_healthy(self, timeout: float = 1.0) -> bool:
        """GET /health answered {"health":"true"} within `timeout`."""
        try:
            status, body = http_get(self.client_port, "/health", timeout=timeout)
            return status == 200 and json.loads(body).get("health") == "true"
        except Exception:
            return False

    def is_leader(self, timeout: float = 2.0) -> bool:
        """True if this member currently is the raft leader (from /metrics)."""
        try:
            status, body = http_get(self.client_port, "/metrics", timeout=timeout)
        except Exception:
            return False
        if status != 200:
            return False
        for line in body.splitlines():
            if line.startswith("etcd_server_is_leader "):
                return float(line.split()[1]) == 1.0
        return False

    # ------------------------------------------------------------ etcd3 API
    def client(self) -> etcd3.MultiEndpointEtcd3Client:
        """The lazily created etcd3 client bound to this member only."""
        if self._client is None:
            self._client = make_client([(HOST, self.client_port)], timeout=self.client_timeout)
        return self._client

    def _call(self, op: Callable[[etcd3.MultiEndpointEtcd3Client], _T], retry_for: float) -> _T:
        deadline = time.monotonic() + retry_for
        while True:
            try:
                return op(self.client())
            except Exception as exc:
                transient = isinstance(exc, _TRANSIENT_EXC) or (
                    isinstance(exc, grpc.RpcError) and exc.code() in _TRANSIENT_CODES
                )
                self._reset_client()
                if not transient or time.monotonic() >= deadline:
                    raise
            time.sleep(0.1)

    def put(self, key: str, value: str | bytes, *, retry_for: float = OP_RETRY) -> int:
        """Put key=value; returns the etcd revision of that put."""

        def op(c: etcd3.MultiEndpointEtcd3Client) -> int:
            return int(c.put(key, value).header.revision)

        return self._call(op, retry_for)

    def delete(self, key: str, *, retry_for: float = OP_RETRY) -> int:
        """Delete one key; returns the revision after the delete (unchanged if absent)."""

        def op(c: etcd3.MultiEndpointEtcd3Client) -> int:
            return int(c.delete(key, return_response=True).header.revision)

        return self._call(op, retry_for)

    def delete_prefix(self, prefix: str, *, retry_for: float = OP_RETRY) -> int:
        """Delete every key starting with `prefix`; returns the resulting revision."""

        def op(c: etcd3.MultiEndpointEtcd3Client) -> int:
            return int(c.delete_prefix(prefix).header.revision)

        return self._call(op, retry_for)

    def get(self, key: str, *, retry_for: float = OP_RETRY) -> bytes | None:
        """Value of `key`, or None if absent."""

        def op(c: etcd3.MultiEndpointEtcd3Client) -> bytes | None:
            value, _meta = c.get(key)
            return None if value is None else bytes(value)

        return self._call(op, retry_for)

    def get_prefix(self, prefix: str, *, retry_for: float = OP_RETRY) -> dict[str, bytes]:
        """All keys under `prefix` as {key: value}."""

        def op(c: etcd3.MultiEndpointEtcd3Client) -> dict[str, bytes]:
            return {m.key.decode(): bytes(v) for v, m in c.get_prefix(prefix)}

        return self._call(op, retry_for)

    def revision(self, *, retry_for: float = OP_RETRY) -> int:
        """Current store revision (linearizable read)."""

        def op(c: etcd3.MultiEndpointEtcd3Client) -> int:
            return int(c.get_response("\0", keys_only=True).header.revision)

        return self._call(op, retry_for)

    def compact(self, revision: int, *, retry_for: float = OP_RETRY) -> None:
        """Compact history up to `revision` (physical), via the API or `etcdctl compact`."""
        probe = self.client()
        if hasattr(probe, "compact"):

            def op(c: etcd3.MultiEndpointEtcd3Client) -> None:
                c.compact(revision, physical=True)

            self._call(op, retry_for)
            return
        etcdctl = find_etcdctl_binary(self.binary)
        if etcdctl is None:
            raise RuntimeError("cannot compact: etcd3 client lacks compact() and no etcdctl")
        subprocess.run(
            [etcdctl, "--endpoints", self.endpoint, "compact", "--physical", str(revision)],
            env={**os.environ, "ETCDCTL_API": "3"},
            check=True,
            capture_output=True,
            timeout=retry_for + 10,
        )

    # ------------------------------------------------------------- internal
    def _reset_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()


def started(server: _Server) -> Iterator[_Server]:
    """The body of an etcd fixture: start `server`, yield it, then kill it and remove its
    files (also when it failed to start)."""
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


def start_cluster(
    n: int,
    *,
    binary: str | None = None,
    name_prefix: str = "m",
    extra_args: Sequence[str] = (),
    timeout: float = START_TIMEOUT,
    **kwargs: Any,
) -> list[EtcdServer]:
    """Start an n-member etcd cluster on loopback and wait until all are healthy.

    All members share one --initial-cluster / --initial-cluster-token. On
    failure every member is killed and cleaned up before the error propagates.
    Callers own the result: call cleanup() on each member when done.
    """
    if n < 1:
        raise ValueError("cluster needs at least one member")
    resolved = binary or find_etcd_binary()
    if resolved is None:
        raise EtcdNotFoundError("etcd binary not found: set $ETCD_BIN or put etcd on PATH")
    names = [f"{name_prefix}{i}" for i in range(n)]
    peer_ports = [free_port() for _ in names]
    initial = ",".join(f"{nm}=http://{HOST}:{pp}" for nm, pp in zip(names, peer_ports, strict=True))
    token = f"cluster-{uuid.uuid4().hex[:12]}"
    members: list[EtcdServer] = []
    try:
        for nm, pp in zip(names, peer_ports, strict=True):
            members.append(
                EtcdServer(
                    nm,
                    binary=resolved,
                    peer_port=pp,
                    initial_cluster=initial,
                    cluster_token=token,
                    extra_args=extra_args,
                    **kwargs,
                )
            )
        for m in members:
            m.launch()
        deadline = time.monotonic() + timeout
        for m in members:
            m.wait_healthy(max(0.5, deadline - time.monotonic()))
    except BaseException:
        for m in members:
            m.cleanup()
        raise
    return members


def _all_stopped(pid: int) -> bool:
    """Whether every thread of ``pid`` is in the stopped state (``T`` in its stat)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):  # a thread that just ended
            state = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            if state != "T":
                return False
    return True
