"""Start-up, reload and shutdown of one serving process.

Order matters. Sockets are bound first, so a bad address fails at once; the mirror then
starts loading in its thread while the listeners already answer SERVFAIL for our zones.
``/ready`` turns 200 only once the first load has been swapped in.

* SIGHUP, or a change of the config file's content (a ConfigMap update swaps a symlink),
  reloads: the new config is loaded and checked, a new pipeline is built around the same
  in-memory index (counting into the same ``Stats``) and swapped in at once. A bad config
  is logged and the old one keeps serving; readiness never changes. Options that need new
  sockets or a new etcd connection are refused with a message saying so.
* SIGTERM: ``/ready`` turns 503 at once, answers continue for ``--lameduck`` seconds (a
  second signal cuts that short), then the listeners close, in-flight queries get a moment
  to finish and the process exits 0. ``/health`` stays 200 throughout.
* SIGINT is Ctrl-C at a terminal: someone wants the process gone now, not a load balancer
  draining it (CoreDNS keeps its lameduck for SIGTERM too). It skips the lameduck, and the
  etcd watch stops quietly, as etcd started from the same terminal gets the signal too.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import hashlib
import ipaddress
import logging
import signal
import socket
import threading
import time
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any

from skydns.httpd import HttpServer, Response, http_ok
from skydns.netaddr import bind, is_local_address, split_hostport
from skydns.options import ConfigError

from . import config as cfg
from . import metrics
from .config import Config
from .forward.cache import ForwardCache
from .forward.forwarder import Forwarder
from .index import Change, Index
from .mirror import Mirror
from .pipeline.chain import Pipeline
from .pipeline.context import Settings
from .querylog import QueryLog
from .stats import Stats
from .tally import duration_bucket
from .transport import TcpServer
from .udp import UdpServer
from .xfr.notify import Notifier
from .xfr.primary import Primary

log = logging.getLogger(__name__)


YOUNG_GC_THRESHOLD = 10_000
GATE_WAIT = 0.1  # seconds between looks at whether we are stopping, while waiting for the gate
# The listeners as a bind error names them.
DNS, HEALTH, READY, METRICS = ("DNS (--dns-addr)", "health (--health-addr)",
                               "ready (--ready-addr)", "metrics (--metrics-addr)")


def settle_heap() -> None:
    """Take every object alive now out of the cyclic garbage collector's sight.

    A loaded index, with the libraries, is hundreds of thousands of long-lived objects.
    Left in the oldest generation, each full collection walks them all: about 8 ms, several
    times a second under forwarding load (short-lived queries keep promoting survivors),
    which is both CPU and a latency spike. The index holds no reference cycles, so reference
    counting still frees it when a later load replaces it.

    The youngest generation is collected after 10,000 net new objects instead of 700: under
    load the queries in flight alone kept it above 700, so it was collected every ~100
    queries for nothing. Cyclic garbage still counts toward the threshold, so it is still
    collected.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_GC_THRESHOLD, *gc.get_threshold()[1:])
    _trim_malloc()


def _trim_malloc() -> None:
    """Give the memory freed after a load back to the system (glibc keeps it otherwise).

    A load reads etcd in pages of up to ~32 MiB, each decoded by gRPC and protobuf in
    C memory; freed, it stays in the process: about 20 MB more resident at 100,000 records.
    Not glibc (musl, say): nothing to do."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class LoopSink:
    """Hands the mirror's data to the current pipeline, as the event loop's thread would.

    On a ``GatedLoop`` the watch thread applies a batch of changes itself, holding the
    gate (so nothing else touches the pipeline meanwhile): waking the loop's thread for
    it cost another thread's wake-up and turn at the GIL per watch response, taken from
    the thread answering queries. A load is swapped in by the loop's thread; until it has
    been, changes queue up behind it there, so none is applied to the index it replaces.
    So do all changes with zone transfers on: the primary schedules its NOTIFYs on the loop.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, app: App) -> None:
        self.loop = loop
        self.app = app
        self.reason = "waiting for the first load from etcd"
        self.gate: threading.Lock | None = getattr(loop, "gate", None)
        # Loads handed to the loop, and swapped in: each counter has one writer thread.
        self._handed = self._swapped = 0

    def loaded(self, index: Index, revision: int) -> None:
        self._handed += 1
        self.loop.call_soon_threadsafe(self._swap_in, index, revision)

    def _swap_in(self, index: Index, revision: int) -> None:
        self.app.pipeline.load(index, revision)
        self._swapped += 1
        settle_heap()

    def changed(self, changes: list[Change], revision: int) -> None:
        gate = self.gate
        if gate is None or self._handed != self._swapped or self.app.primary is not None:
            self.loop.call_soon_threadsafe(self._apply, changes, revision)
            return
        while not gate.acquire(timeout=GATE_WAIT):
            if self.app.stopping:  # the loop may be waiting for the mirror to stop
                return
        try:
            self._apply(changes, revision)
        finally:
            gate.release()

    def _apply(self, changes: list[Change], revision: int) -> None:
        self.app.pipeline.apply(changes, revision)

    def state(self, connected: bool, reason: str) -> None:
        self.reason = "" if connected else f"etcd unavailable: {reason}"


class App:
    def __init__(self, config: Config, argv: Sequence[str] = (), env: Mapping[str, str] = {},
                 *, reuse_port: bool = False, http: bool = True) -> None:
        self.config = config
        self.argv, self.env = list(argv), dict(env)
        self.server_label = f"dns://{config.dns_addr}"
        self.stats = Stats()
        transfers = config.transfers
        # The primary keeps its journal across reloads (its options need a restart).
        self.primary = Primary(transfers, config.zones, self.stats.xfr) \
            if transfers.enabled else None
        self.notifier: Notifier | None = None
        self.pipeline = self._build_pipeline(config)
        self.stopping = False
        self.interrupted = False  # SIGINT: stop without the lameduck
        # Guards must see every query first, so no quick answers from the reading thread.
        quick = None if self.pipeline.shared.settings.guarded else self.pipeline.quick
        self.udp = UdpServer(bind(config.dns_addr, socket.SOCK_DGRAM, reuse_port, what=DNS),
                             self.pipeline.handle, quick)
        self.tcp = TcpServer(bind(config.dns_addr, socket.SOCK_STREAM, reuse_port, what=DNS),
                             self.pipeline.handle, config.tcp_limits, self.stats.guard.tcp)
        self.registry = metrics.registry(self.snapshot, config.deprecated_forward_metrics)
        self.http = [
            HttpServer(bind(config.health_addr, socket.SOCK_STREAM, what=HEALTH),
                       {"/health": self.health}),
            HttpServer(bind(config.ready_addr, socket.SOCK_STREAM, what=READY),
                       {"/ready": self.ready}),
            HttpServer(bind(config.metrics_addr, socket.SOCK_STREAM, what=METRICS),
                       {"/metrics": self.metrics}),
        ] if http else []
        self.sink: LoopSink | None = None
        self.mirror: Mirror | None = None
        self._config_hash = self._read_config_hash()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- building --------------------------------------------------------------------

    def _build_pipeline(self, config: Config) -> Pipeline:
        """The query path for ``config``, counting into this process's one ``Stats``."""
        settings = config.forward(self._is_ourselves)
        forwarder = None
        if settings.upstreams or settings.stubs:
            caching = config.cache_success or config.cache_denial
            cache = ForwardCache(config.cache, self.stats.cache) if caching else None
            forwarder = Forwarder(settings, cache, self.stats.forward)
        querylog = None
        if config.log_queries:
            querylog = QueryLog(set(config.log_queries), config.log_format)
        return Pipeline(
            Settings(config.zones, config.lookup, max_udp=config.max_udp_size,
                     cache_entries=config.cache_entries,
                     cache_bytes=config.cache_mib << 20, fallthrough=config.fallthrough_zones,
                     shuffle=config.shuffle, nsid=config.nsid.encode(), rrl=config.rrl,
                     cookies=config.cookie_jar(), acl=config.acl, minimal_any=config.minimal_any,
                     tcp_keepalive=config.tcp_idle_timeout if config.tcp_keepalive else 0.0,
                     serial_offset=config.serial_offset, dnssec=config.signer()),
            stats=self.stats, forwarder=forwarder, querylog=querylog, primary=self.primary)

    def snapshot(self) -> metrics.Snapshot:
        self.stats.ready = self.ready()[0] == 200
        return metrics.snapshot(self.stats, self.server_label, list(self.config.zone))

    def _is_ourselves(self, upstream: str) -> bool:
        """resolv.conf may name this very server (e.g. 127.0.0.1 on the node): skip it.

        Ourselves means our port and either our address or, when we listen on every
        address, any address of this machine. Another server on another loopback address
        (127.0.0.53, say) is not ourselves.
        """
        return is_ourselves(upstream, self.config.dns_addr)

    # -- probes ----------------------------------------------------------------------

    def health(self) -> Response:
        return 200, "text/plain", b"OK"

    def ready(self) -> Response:
        if self.stopping:
            return 503, "text/plain", b"Shutting down\n"
        if not self.pipeline.ready:
            reason = self.sink.reason if self.sink else "starting"
            return 503, "text/plain", f"not ready: {reason}\n".encode()
        return 200, "text/plain", b"OK"

    def metrics(self) -> Response:
        return 200, "text/plain; version=0.0.4; charset=utf-8", metrics.render(self.registry)

    # -- running ---------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, reload: asyncio.Event,
                  loaded: tuple[Index, int] | None = None) -> int:
        """Serve until ``stop``; ``loaded``: a full load already made (by the ``--workers``
        supervisor, before it forked us), served at once and watched from its revision."""
        loop = asyncio.get_running_loop()
        self.sink = LoopSink(loop, self)
        self.mirror = Mirror(self.config.etcd, self.config.etcd_prefix, self.sink,
                             state=self.stats.etcd,
                             probe_interval=self.config.etcd_probe_interval,
                             loaded_at=loaded[1] if loaded else 0)
        if loaded is not None:
            self.sink.loaded(*loaded)
        if self.primary is not None:
            self.notifier = Notifier(self.primary)
        if self.pipeline.forwarder is not None:  # read by the UDP thread, if it has one
            self.pipeline.forwarder.read_with(self.udp, loop)
        self.udp.start(loop)
        await self.tcp.start()
        for server in self.http:
            await server.start()
        self.mirror.start()
        log.info("skyserve serving %s on %s (config %s)", ", ".join(self.config.zone),
                 self.config.dns_addr, self.config.digest())
        self._spawn(self._detect_loops())
        self._spawn(self._watch_config(reload))
        if self.http:
            self._spawn(self._check_health(self.http[0].sock.getsockname()[:2]))
        while not stop.is_set():
            waiter = asyncio.ensure_future(reload.wait())
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait((waiter, stopper), return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            stopper.cancel()
            if reload.is_set():
                reload.clear()
                self.reload("SIGHUP or config change")
        stop.clear()
        await self.lameduck(stop)
        await self.shutdown()
        return 0

    def interrupt(self, stop: asyncio.Event) -> None:
        """SIGINT: stop at once; a broken etcd watch from here on is no news."""
        self.interrupted = True
        if self.mirror is not None:
            self.mirror.quiet = True
        stop.set()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _check_health(self, addr: tuple[str, int]) -> None:
        """Ask our own /health once a second and time it (coredns_health_request_*)."""
        host = "127.0.0.1" if addr[0] in ("0.0.0.0", "") else "::1" if addr[0] == "::" else addr[0]
        while True:
            await asyncio.sleep(1.0)
            start = time.perf_counter()
            try:
                ok = await asyncio.wait_for(http_ok(host, addr[1], "/health"), 1.0)
            except (OSError, TimeoutError):
                ok = False
            seconds = time.perf_counter() - start
            health = self.stats.health
            if not ok:
                health.failures += 1
            health.buckets[duration_bucket(seconds)] += 1
            health.seconds += seconds

    async def _detect_loops(self) -> None:
        forwarder = self.pipeline.forwarder
        if forwarder is None:
            return
        looped = await forwarder.detect_loops()
        if looped:
            log.error("forwarding loop detected through %s: refusing to forward there",
                      ", ".join(looped))

    async def lameduck(self, again: asyncio.Event) -> None:
        self.stopping = True
        if self.interrupted:
            log.info("interrupted: shutting down now, without the lameduck")
        elif self.config.lameduck > 0:
            log.info("shutting down: still answering for %.1fs (lameduck)", self.config.lameduck)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(again.wait(), self.config.lameduck)

    async def shutdown(self) -> None:
        self.stopping = True
        self.udp.stop_reading()
        forwarder = self.pipeline.forwarder
        deadline = time.monotonic() + 2.0
        while forwarder is not None and forwarder.in_flight() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)  # queries already sent upstream still get answered
        self.udp.close()
        await self.tcp.close()
        if forwarder is not None:
            forwarder.close()
        if self.notifier is not None:
            self.notifier.close()
        for task in list(self._tasks):
            task.cancel()
        if self.mirror is not None:
            self.mirror.stop()
        for server in self.http:
            server.close()
        log.info("skyserve stopped")

    # -- reloading -------------------------------------------------------------------

    def reload(self, why: str) -> bool:
        try:
            new = cfg.load(self.argv, self.env)
        except ConfigError as exc:
            log.error("reload (%s) rejected: %s; still serving config %s", why, exc,
                      self.config.digest())
            return False
        if new.digest() == self.config.digest():
            return True
        restart = self.config.restart_changes(new)
        if restart:
            log.error("reload (%s) rejected: changing %s needs a restart; still serving "
                      "config %s", why, ", ".join(restart), self.config.digest())
            return False
        old = self.pipeline
        try:
            pipeline = self._build_pipeline(new)
        except (OSError, ValueError) as exc:
            log.error("reload (%s) rejected: %s", why, exc)
            return False
        pipeline.adopt(old)
        self.pipeline = pipeline
        if pipeline.forwarder is not None:
            pipeline.forwarder.read_with(self.udp, asyncio.get_running_loop())
        self.udp.handler = self.tcp.handler = pipeline.handle
        self.udp.quick = pipeline.quick
        self.tcp.limits = new.tcp_limits
        self.config = new
        logging.getLogger().setLevel(new.log_level.upper())
        if old.forwarder is not None:  # let its in-flight queries finish first
            asyncio.get_running_loop().call_later(new.forward_timeout * 3 + 1, old.forwarder.close)
        self._spawn(self._detect_loops())
        log.info("reloaded (%s): now serving config %s", why, new.digest())
        return True

    def _read_config_hash(self) -> str | None:
        path = cfg.config_path(self.argv, self.env)
        if path is None:
            return None
        try:
            with open(path, "rb") as f:
                return hashlib.sha256(f.read()).hexdigest()
        except OSError:
            return None

    async def _watch_config(self, reload: asyncio.Event) -> None:
        """Poll the config file's content; opening the path follows a swapped symlink."""
        interval = self.config.reload_interval
        if interval <= 0 or cfg.config_path(self.argv, self.env) is None:
            return
        while True:
            await asyncio.sleep(interval)
            digest = self._read_config_hash()
            if digest is not None and digest != self._config_hash:
                self._config_hash = digest
                reload.set()


def is_ourselves(upstream: str, dns_addr: str) -> bool:
    host, port = split_hostport(upstream, 53)
    ours, our_port = split_hostport(dns_addr, 53)
    if port != our_port:
        return False
    if ours in ("0.0.0.0", "::"):
        with contextlib.suppress(ValueError):
            if ipaddress.ip_address(host).is_loopback:
                return True
        return is_local_address(host)
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(host) == ipaddress.ip_address(ours)
    return host == ours


async def serve(config: Config, argv: Sequence[str], env: Mapping[str, str]) -> int:
    app = App(config, argv, env)
    stop, reload = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, app.interrupt, stop)
    loop.add_signal_handler(signal.SIGHUP, reload.set)
    return await app.run(stop, reload)
