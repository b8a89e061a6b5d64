"""Start-up and shutdown: builds the engine, the etcd mirror, the listeners and probes.

Order matters. Sockets are bound first, so a bad address fails at once; the mirror then
starts loading in its thread while the listeners already answer SERVFAIL for our zones.
``/ready`` turns 200 only once the first load has been swapped in. On SIGTERM or SIGINT
the listeners close, in-flight TCP queries get a moment to finish, and the process exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import time

from .config import Config
from .engine import Change, Engine
from .httpd import HttpServer, Response
from .mirror import Mirror
from .transport import TcpServer, UdpServer, bind
from .tree import Index

log = logging.getLogger(__name__)


class LoopSink:
    """Hands the mirror's data to the engine on the event loop's thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop, engine: Engine) -> None:
        self.loop = loop
        self.engine = engine
        self.reason = "waiting for the first load from etcd"

    def loaded(self, index: Index, revision: int) -> None:
        self.loop.call_soon_threadsafe(self.engine.load, index, revision)

    def changed(self, changes: list[Change], revision: int) -> None:
        self.loop.call_soon_threadsafe(self.engine.apply, changes, revision)

    def state(self, connected: bool, reason: str) -> None:
        self.reason = "" if connected else f"etcd unavailable: {reason}"


class App:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.engine = Engine(
            config.zones, config.lookup, max_udp=config.max_udp_size,
            cache_entries=config.cache_entries,
        )
        self.errors = 0
        self.started = time.time()
        self.stopping = False
        # Bind everything up front: a port in use is a start-up error, not a later surprise.
        self.udp = UdpServer(bind(config.dns_addr, socket.SOCK_DGRAM), self.engine.handle,
                             self._count_error)
        self.tcp = TcpServer(bind(config.dns_addr, socket.SOCK_STREAM), self.engine.handle,
                             self._count_error)
        self.http = [
            HttpServer(bind(config.health_addr, socket.SOCK_STREAM), {"/health": self.health}),
            HttpServer(bind(config.ready_addr, socket.SOCK_STREAM), {"/ready": self.ready}),
        ]
        self.sink: LoopSink | None = None
        self.mirror: Mirror | None = None

    def _count_error(self) -> None:
        self.errors += 1

    def health(self) -> Response:
        return 200, "text/plain", b"OK"

    def ready(self) -> Response:
        if self.stopping:
            return 503, "text/plain", b"shutting down\n"
        if not self.engine.ready:
            reason = self.sink.reason if self.sink else "starting"
            return 503, "text/plain", f"not ready: {reason}\n".encode()
        return 200, "text/plain", b"OK"

    async def run(self, stop: asyncio.Event) -> int:
        loop = asyncio.get_running_loop()
        self.sink = LoopSink(loop, self.engine)
        self.mirror = Mirror(self.config.etcd, self.config.etcd_prefix, self.sink,
                             probe_interval=self.config.etcd_probe_interval)
        self.udp.start(loop)
        await self.tcp.start()
        for server in self.http:
            await server.start()
        self.mirror.start()
        log.info(
            "skyserve serving %s on %s (config %s)", ", ".join(self.config.zone),
            self.config.dns_addr, self.config.digest(),
        )
        await stop.wait()
        await self.shutdown()
        return 0

    async def shutdown(self) -> None:
        self.stopping = True
        self.udp.close()
        await self.tcp.close()
        if self.mirror is not None:
            self.mirror.stop()
        for server in self.http:
            server.close()
        log.info("skyserve stopped")


async def serve(config: Config) -> int:
    app = App(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return await app.run(stop)
