"""``--workers N``: N serving processes on one DNS address, so every core answers.

The supervisor forks N workers before it starts anything else. Each worker is a complete
skyserve (its own etcd mirror, pipeline, forwarder and cache) whose DNS sockets are bound
with SO_REUSEPORT, so the kernel spreads queries over them. The supervisor serves
``/health``, ``/ready`` (200 only when every worker is ready) and ``/metrics``: on each scrape
it asks every worker for its counters over a control socket and sums them, so the figures
are exact across workers. A worker that dies is replaced. SIGTERM goes to every worker
(each runs its own lameduck), SIGINT too (each stops at once); SIGHUP makes every worker
reload.
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

from skydns.httpd import HttpServer, Response
from skydns.netaddr import bind

from . import eventloop, metrics
from .app import DNS, HEALTH, METRICS, READY, App
from .config import Config

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


class Supervisor:
    def __init__(self, config: Config, argv: Sequence[str], env: Mapping[str, str]) -> None:
        self.config = config
        self.argv, self.env = list(argv), dict(env)
        self.workers: dict[int, Worker] = {}
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

    def spawn(self) -> None:
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
                code = eventloop.run(_worker(self.config, self.argv, self.env, child_end))
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
        while not stop.is_set():
            self.reap()
            if reload.is_set():
                reload.clear()
                self.signal_all(signal.SIGHUP)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)
        self.stopping = True
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
                  control: socket.socket) -> int:
    app = App(config, argv, env, reuse_port=True, http=False)
    stop, reload = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, app.interrupt, stop)
    loop.add_signal_handler(signal.SIGHUP, reload.set)
    task = asyncio.ensure_future(_answer_supervisor(app, control))
    try:
        return await app.run(stop, reload)
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
    supervisor = Supervisor(config, argv, env)
    for _ in range(config.workers):
        supervisor.spawn()  # before any event loop or thread exists in this process
    return asyncio.run(supervisor.run())
