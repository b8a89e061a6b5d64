"""Fixtures of the kube2etcd tests: the fake Kubernetes API and the end-to-end set-up."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kubefake import FakeKubeAPI
from tests.support.bridge_env import Env, make_env
from tests.support.etcd_server import EtcdServer


@pytest.fixture
def kube() -> Iterator[FakeKubeAPI]:
    with FakeKubeAPI(bookmark_interval=0.3, max_watch_seconds=5.0) as api:
        yield api


@pytest.fixture
def env(kube: FakeKubeAPI, etcd: EtcdServer, clean_prefix: str, skyserve: Callable[..., Any],
        tmp_path: Path) -> Iterator[Env]:
    yield from make_env(kube, etcd, clean_prefix, skyserve, tmp_path)
