"""``--workers N``: N serving processes on one DNS address, so every core answers.

Each worker is a complete skyserve (its own etcd watch, pipeline, forwarder and cache) whose
DNS sockets are bound with SO_REUSEPORT, so the kernel spreads queries over them. The
supervisor serves ``/health``, ``/ready`` (200 only when every worker is ready) and
``/metrics``: on each scrape it asks every worker for its counters over a control socket and
sums them, so the figures are exact across workers. SIGTERM goes to every worker (each runs
its own lameduck), SIGINT too (each stops at once); SIGHUP makes every worker reload.

Memory: the supervisor reads the whole etcd prefix once, in a thread while its probes
already answer, settles the heap (``settle_heap``: frozen, the collector never writes to
those objects again) and only then forks the workers, which share that index copy-on-write
instead of loading N copies. Each worker's watch starts right after the load's revision, so
a change reaches every worker, and the pages it touches become that worker's own (so do
pages whose objects a lookup touches: CPython writes reference counts). A compacted watch
revision makes that worker alone load the prefix again. The supervisor then drops its
reference, so it keeps no copy of its own as the workers' data drifts from it.

* etcd unreadable at start: the workers are forked without data and each loads for itself,
  retrying until etcd answers, as a single process does.
* A worker that dies is replaced by one that loads for itself: the supervisor's snapshot
  would be stale, and replaying a long history from its revision can take longer.
* No thread may hold a lock across a fork: the supervisor's etcd client is closed (its
  connections and read-ahead thread gone) and the loading thread finished before the
  first fork.
* A worker re-reads the config file as it starts (a reload), so it serves what its siblings
  serve even if the file changed since the supervisor read it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import time
from collections.abc import Mapping, Sequence
from typing import Any

from skydns.background import Background
from skydns.etcd import EtcdClient, EtcdError
from skydns.httpd import HttpServer, Response
from skydns.netaddr import bind

from . import eventloop, metrics
from .app import DNS, HEALTH, METRICS, READY, App, settle_heap
from .config import Config
from .index import Index
from .mirror import load_index

Loaded = tuple[Index, int]

log = logging.getLogger(__name__)

ASK_TIMEOUT = 2.0


class Worker:
    def __init__(self, pid: int, control: socket.socket) -> None:
        self.pid = pid
        self.control = control
        self.lock = asyncio.Lock()
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def ask(self) -> dict[str, Any] | None:
        """The worker's readiness and metrics snapshot, or None if it does not answer."""
        async with self.lock:
            try:
                if self.streams is None:
                    self.streams = await asyncio.open_connection(sock=self.control)
                reader, writer = self.streams
                writer.write(b"snapshot\n")
                line = await asyncio.wait_for(reader.readline(), ASK_TIMEOUT)
                return json.loads(line) if line else None
            except (OSError, TimeoutError, ValueError):
                return None


class Preload:
    """The supervisor's one full read of etcd, in a thread so the probes answer meanwhile."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.loaded: Loaded | None = None
        self.thread = Background("etcd-preload", self._load)
        self.thread.start()

    def _load(self) -> None:
        try:
            client = EtcdClient(self.config.etcd)
        except EtcdError as exc:
            self._failed(exc)
            return
        try:
            self.loaded = load_index(client, self.config.etcd_prefix, self.thread.check)
        except EtcdError as exc:
            self._failed(exc)
        finally:
            client.close()  # its connections end with it: forking is safe afterwards

    def _failed(self, exc: EtcdError) -> None:
        log.warning("etcd unavailable (%s): each worker loads the records itself", exc)

    def take(self) -> Loaded | None:
        """The index, once the thread has finished (the supervisor keeps no reference)."""
        loaded, self.loaded = self.loaded, None
        return loaded


class Supervisor:
    def __init__(self, config: Config, argv: Sequence[str], env: Mapping[str, str]) -> None:
        self.config = config
        self.argv, self.env = list(argv), dict(env)
        self.workers: dict[int, Worker] = {}
        self.preload: Preload | None = None  # while the records load, before any worker
        self.stopping = False
        self.stop_signal = signal.SIGTERM  # passed on to the workers: SIGINT skips the lameduck
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):  # a busy DNS port: say so now,
            bind(config.dns_addr, kind, True, what=DNS).close()  # not in workers that die
        self.http_socks = [bind(a, socket.SOCK_STREAM, what=what) for a, what in
                           ((config.health_addr, HEALTH), (config.ready_addr, READY),
                            (config.metrics_addr, METRICS))]
        self.registry = metrics.registry(self._merged, config.deprecated_forward_metrics)
        self._last: metrics.Snapshot | None = None

    # -- workers ---------------------------------------------------------------------

    def spawn(self, loaded: Loaded | None = None) -> None:
        parent_end, child_end = socket.socketpair()
        pid = os.fork()
        if pid == 0:  # the worker
            parent_end.close()
            for s in self.http_socks:
                s.close()
            for w in self.workers.values():
                w.control.close()
            code = 1
            try:
                code = eventloop.run(_worker(self.config, self.argv, self.env, child_end,
                                             loaded))
            finally:
                os._exit(code)
        child_end.close()
        self.workers[pid] = Worker(pid, parent_end)
        log.info("started worker %d", pid)

    def reap(self) -> None:
        while self.workers:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self.workers.pop(pid, None)
            if worker is not None:
                worker.control.close()
                if not self.stopping:
                    log.error("worker %d exited (status %d); starting another", pid, status)
                    self.spawn()

    def signal_all(self, sig: int) -> None:
        for pid in self.workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    # -- probes ----------------------------------------------------------------------

    async def _answers(self) -> list[dict[str, Any] | None]:
        return list(await asyncio.gather(*(w.ask() for w in self.workers.values())))

    async def ready(self) -> Response:
        if self.stopping:
            return 503, "text/plain", b"Shutting down\n"
        answers = await self._answers()
        waiting = [a["reason"] if a else "a worker does not answer" for a in answers
                   if not (a and a["ready"])]
        if self.preload is not None:
            waiting.append("loading the records from etcd")
        if waiting or not answers:
            return 503, "text/plain", f"not ready: {'; '.join(waiting) or 'no workers'}\n".encode()
        return 200, "text/plain", b"OK"

    async def scrape(self) -> Response:
        snaps = [a["snapshot"] for a in await self._answers() if a]
        if snaps:
            self._last = metrics.merge(snaps)
        return 200, "text/plain; version=0.0.4; charset=utf-8", metrics.render(self.registry)

    def _merged(self) -> metrics.Snapshot:
        if self._last is None:
            raise RuntimeError("no worker snapshot yet")
        return self._last

    # -- running ---------------------------------------------------------------------

    def _stop_on(self, sig: signal.Signals, stop: asyncio.Event) -> None:
        self.stop_signal = sig
        stop.set()

    def start_workers(self, preload: Preload) -> None:
        loaded = preload.take()
        if loaded is not None:
            settle_heap()  # before the fork: the workers inherit a frozen heap
        for _ in range(self.config.workers):
            self.spawn(loaded)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        stop, reload = asyncio.Event(), asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop_on, sig, stop)
        loop.add_signal_handler(signal.SIGHUP, reload.set)
        routes: list[dict[str, Any]] = [{"/health": lambda: (200, "text/plain", b"OK")},
                                        {"/ready": self.ready}, {"/metrics": self.scrape}]
        servers = [HttpServer(s, r) for s, r in zip(self.http_socks, routes, strict=True)]
        for server in servers:
            await server.start()
        self.preload = Preload(self.config)
        while not stop.is_set():
            if self.preload is not None and not self.preload.thread.alive:
                self.start_workers(self.preload)
                self.preload = None
                reload.clear()  # a SIGHUP during the load: the workers read the file anyway
            self.reap()
            if reload.is_set() and self.preload is None:
                reload.clear()
                self.signal_all(signal.SIGHUP)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)
        self.stopping = True
        if self.preload is not None:
            self.preload.thread.stop(self.config.etcd.timeout)
        self.signal_all(self.stop_signal)
        deadline = time.monotonic() + self.config.lameduck + 10
        while self.workers and time.monotonic() < deadline:
            self.reap()
            await asyncio.sleep(0.05)
        self.signal_all(signal.SIGKILL)
        for server in servers:
            server.close()
        return 0


async def _worker(config: Config, argv: Sequence[str], env: Mapping[str, str],
                  control: socket.socket, loaded: Loaded | None) -> int:
    app = App(config, argv, env, reuse_port=True, http=False)
    stop, reload = asyncio.Event(), asyncio.Event()
    reload.set()  # the config file as it is now, which may be newer than the supervisor's
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, app.interrupt, stop)
    loop.add_signal_handler(signal.SIGHUP, reload.set)
    task = asyncio.ensure_future(_answer_supervisor(app, control))
    try:
        return await app.run(stop, reload, loaded)
    finally:
        task.cancel()


async def _answer_supervisor(app: App, control: socket.socket) -> None:
    reader, writer = await asyncio.open_connection(sock=control)
    while await reader.readline():
        status, _, body = app.ready()
        answer = {"ready": status == 200, "reason": body.decode().strip(),
                  "snapshot": app.snapshot()}
        writer.write(json.dumps(answer).encode() + b"\n")
        await writer.drain()


def serve_workers(config: Config, argv: Sequence[str], env: Mapping[str, str]) -> int:
    return asyncio.run(Supervisor(config, argv, env).run())
