"""Start-up and shutdown of the bridge: watchers, reconciler, leader election, probes.

The listeners are bound first, so a bad address fails at once. Then the reconciler (and the
leader campaign) start, and one watcher thread per watched source begins listing. The main
thread only runs the probe/metrics HTTP servers and waits for SIGTERM or SIGINT; on either
it stops the watchers, lets the reconciler finish its pass, releases the leader lease (so a
standby takes over at once) and exits 0. Neither the API server nor etcd being down ever
ends the process: the threads retry with backoff and the last state stays in etcd.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket

from skydns.httpd import HttpServer, Response, Route
from skydns.netaddr import bind
from skydns.options import ConfigError

from . import __version__
from .config import Config
from .kube import KubeConfigError, Watcher, WatchSettings, api_client, sources
from .leader import Leader
from .metrics import Metrics
from .reconcile import Reconciler, ReconcileSettings

log = logging.getLogger(__name__)


class App:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.metrics = Metrics(__version__)
        self.sources = sources(config.namespaces, config.endpoints_api,
                               config.pods == "verified")
        self.leader: Leader | None = None
        if config.leader_elect:
            self.leader = Leader(
                config.etcd, config.domain, config.leader_lease_ttl,
                on_change=self._leadership,
                on_lease=lambda result: self.metrics.etcd_ops.labels("lease", result).inc())
        self.reconciler = Reconciler(
            config.zone, config.etcd, self.sources, self.metrics,
            ReconcileSettings(resync_period=config.resync_period,
                              probe_interval=config.etcd_probe_interval),
            leader=self.leader,
        )
        self.stopping = False
        self.watchers: list[Watcher] = []
        try:
            self.api_clients = [api_client(config.kubeconfig) for _ in self.sources]
        except KubeConfigError as exc:
            raise ConfigError(f"--kubeconfig: {exc}") from None
        # Bind up front: a port in use is a start-up error, not a later surprise.
        routes: dict[str, dict[str, Route]] = {}
        names: dict[str, list[str]] = {}  # what a bind error calls the listener
        if config.health_addr:
            routes.setdefault(config.health_addr, {}).update(
                {"/healthz": self.healthz, "/readyz": self.readyz, "/readiness": self.readyz})
            names.setdefault(config.health_addr, []).append("health (--health-addr)")
        if config.metrics_addr:
            routes.setdefault(config.metrics_addr, {})["/metrics"] = self.metrics.render
            names.setdefault(config.metrics_addr, []).append("metrics (--metrics-addr)")
        self.http = [HttpServer(bind(addr, socket.SOCK_STREAM, what=" and ".join(names[addr])), r)
                     for addr, r in routes.items()]

    def _leadership(self, leading: bool) -> None:
        self.metrics.leader.set(1 if leading else 0)
        self.metrics.leader_transitions.inc()
        if leading:
            self.reconciler.request_full()

    def healthz(self) -> Response:
        return 200, "text/plain", b"ok\n"

    def readyz(self) -> Response:
        if self.stopping:
            return 503, "text/plain", b"shutting down\n"
        ready, reason = self.reconciler.readiness()
        return (200 if ready else 503), "text/plain", f"{reason}\n".encode()

    def start_watchers(self) -> None:
        settings = WatchSettings(label_selector=self.config.label_selector,
                                 watch_timeout=self.config.watch_timeout)
        self.metrics.watching([source.resource for source in self.sources])
        for api, source in zip(self.api_clients, self.sources, strict=True):
            watcher = Watcher(
                api, source, self.reconciler.submit, settings,
                on_restart=lambda resource, _why: self.metrics.watch_restarts.labels(
                    resource).inc(),
            )
            self.watchers.append(watcher)
        for watcher in self.watchers:
            watcher.start()

    async def run(self, stop: asyncio.Event) -> int:
        for server in self.http:
            await server.start()
        self.reconciler.start()
        if self.leader is None:
            self.metrics.leader.set(1)
        else:
            self.leader.start()
        self.start_watchers()
        log.info(
            "kube2etcd %s: domain %s, etcd %s under %s, watching %s (config %s)", __version__,
            self.config.domain, ",".join(self.config.etcd_endpoints), self.config.etcd_prefix,
            ", ".join(str(s) for s in self.sources), self.config.digest(),
        )
        await stop.wait()
        self.stopping = True
        await asyncio.get_running_loop().run_in_executor(None, self.shutdown)
        for server in self.http:
            server.close()
        log.info("kube2etcd stopped")
        return 0

    def shutdown(self) -> None:
        self.stopping = True
        for watcher in self.watchers:
            watcher.stop(timeout=0)
        self.reconciler.stop()
        if self.leader is not None:
            self.leader.stop()


async def serve(config: Config) -> int:
    app = App(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return await app.run(stop)
