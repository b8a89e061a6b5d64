"""Leader election on an etcd lease, for ``--leader-elect``.

Several bridges may watch the same cluster and write the same etcd; only the holder of
``/kube2etcd/leader/<domain>`` writes. The key is created only if absent, attached to a
lease of ``ttl`` seconds that the leader keeps alive every ttl/3. When the leader dies its
lease expires and the key goes with it; a standby, trying every ttl/4, takes over at most
a quarter TTL later. A leader that cannot renew for a whole TTL, or finds its lease gone,
steps down. Writers check the key's value in every transaction (``guard``), so even a
leader that has not noticed yet that it was deposed cannot write.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from typing import Protocol

from skydns.background import Background
from skydns.etcd import EtcdClient, EtcdError, EtcdSettings

log = logging.getLogger(__name__)


class Leadership(Protocol):
    """What the reconciler asks of an election: ``Leader`` below, or ``Always``."""

    def is_leader(self) -> bool: ...

    def guard(self) -> tuple[str, str] | None: ...

    @property
    def error(self) -> str: ...


class Always:
    """No election: this bridge is the only writer."""

    error = ""

    def is_leader(self) -> bool:
        return True

    def guard(self) -> tuple[str, str] | None:
        return None

KEY_PREFIX = "/kube2etcd/leader/"


def default_identity() -> str:
    return f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"


class Leader:
    def __init__(
        self,
        etcd: EtcdSettings,
        domain: str,
        ttl: float,
        *,
        on_change: Callable[[bool], None] = lambda leading: None,
        on_lease: Callable[[str], None] = lambda result: None,
        identity: str | None = None,
        connect: Callable[[EtcdSettings], EtcdClient] = EtcdClient,
    ) -> None:
        self.etcd = etcd
        self.key = KEY_PREFIX + domain
        self.ttl = max(2, round(ttl))  # etcd's minimum lease TTL is about 2 s
        self.identity = identity or default_identity()
        self.on_change = on_change
        self.on_lease = on_lease  # "ok" or "error" after each campaign or renewal
        self.connect = connect
        self._leading = False
        self._lease: int | None = None
        self._renewed = 0.0  # time.monotonic() of the last successful renewal
        self._client: EtcdClient | None = None
        self._error = ""
        self._thread = Background("leader", self._run)

    def is_leader(self) -> bool:
        return self._leading

    def guard(self) -> tuple[str, str] | None:
        return (self.key, self.identity)

    @property
    def error(self) -> str:
        """Why the last etcd request failed ("" when it did not)."""
        return self._error

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        """Stop campaigning; a leader hands over at once by revoking its lease."""
        self._thread.stop(timeout)
        lease, client = self._lease, self._client
        if lease is not None and client is not None:
            try:
                client.revoke_lease(lease)
                log.info("leader: released %s", self.key)
            except EtcdError as exc:
                log.warning("leader: could not release the lease: %s", exc)
        self._set(False)
        if client is not None:
            client.close()

    def _run(self) -> None:
        while True:
            try:
                if self._client is None:
                    self._client = self.connect(self.etcd)
                if self._leading:
                    self._renew(self._client)
                    pause = self.ttl / 3
                else:
                    self._campaign(self._client)
                    pause = self.ttl / 3 if self._leading else self.ttl / 4
                self._error = ""
                self.on_lease("ok")
            except EtcdError as exc:
                self.on_lease("error")
                if str(exc) != self._error:
                    log.warning("leader: etcd unavailable: %s", exc)
                self._error = str(exc)
                if self._client is not None:
                    self._client.close()
                    self._client = None
                if self._leading and time.monotonic() - self._renewed > self.ttl:
                    log.warning("leader: lease not renewed for %ss; stepping down", self.ttl)
                    self._lease = None
                    self._set(False)
                pause = min(1.0, self.ttl / 4)
            self._thread.pause(pause)

    def _campaign(self, client: EtcdClient) -> None:
        lease = client.grant_lease(self.ttl)
        try:
            won = client.put_if_absent(self.key, self.identity, lease=lease)
        except EtcdError:
            self._forget(client, lease)
            raise
        if not won:
            self._forget(client, lease)
            return
        self._lease = lease
        self._renewed = time.monotonic()
        log.info("leader: %s elected as %s (lease TTL %ss)", self.key, self.identity, self.ttl)
        self._set(True)

    def _renew(self, client: EtcdClient) -> None:
        assert self._lease is not None
        if client.refresh_lease(self._lease) <= 0:
            log.warning("leader: lease expired; stepping down")
            self._lease = None
            self._set(False)
            return
        self._renewed = time.monotonic()

    @staticmethod
    def _forget(client: EtcdClient, lease: int) -> None:
        with contextlib.suppress(EtcdError):  # if this fails, it expires by itself
            client.revoke_lease(lease)

    def _set(self, leading: bool) -> None:
        if leading != self._leading:
            self._leading = leading
            self.on_change(leading)
