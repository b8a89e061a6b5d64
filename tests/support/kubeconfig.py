"""Kubeconfig files for tests: point the real `kubernetes` client at a fake API server."""

from __future__ import annotations

import json
import os
from pathlib import Path

import kubernetes.client
import kubernetes.config

__all__ = ["api_client", "write_kubeconfig"]


def write_kubeconfig(path: str | os.PathLike[str], url: str, *, namespace: str = "default",
                     token: str = "fake-token") -> Path:
    """Write a kubeconfig whose current context uses the API server at `url` with a bearer
    token. JSON is valid YAML, so this needs no YAML library. Returns the path."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": url}}],
        "users": [{"name": "fake", "user": {"token": token}}],
        "contexts": [{"name": "fake",
                      "context": {"cluster": "fake", "user": "fake", "namespace": namespace}}],
        "current-context": "fake",
        "preferences": {},
    }
    out = Path(path)
    out.write_text(json.dumps(config, indent=2) + "\n")
    return out


def api_client(kubeconfig: str | os.PathLike[str], *, bypass_proxy: bool = True
               ) -> kubernetes.client.ApiClient:
    """A fresh ApiClient loaded from `kubeconfig`, leaving the client's global default
    Configuration alone. `bypass_proxy` ignores any *_proxy environment setting (the fake listens
    on loopback). Close it when done (it is a context manager)."""
    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=os.fspath(kubeconfig), client_configuration=configuration,
        persist_config=False)
    if bypass_proxy:
        configuration.proxy = None
    return kubernetes.client.ApiClient(configuration)
