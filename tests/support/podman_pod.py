"""Run the rendered kube-dns Deployment as a real pod with `podman play kube`.

The pod spec is played as rendered except for what stands in for a cluster, always the same way
(`for_podman`):
* the Deployment gets a name of the test's own and one replica (podman plays one pod);
* the ports the test talks to (the declared container ports and every probe's port) are
  published on 127.0.0.1 with `hostPort`s, since the test, like a kubelet, probes from outside;
* the projected service-account volume (which only a kubelet can fill) becomes a read-only
  hostPath directory holding what the kubelet would put there: token, ca.crt and namespace,
  mounted at the same path; KUBERNETES_SERVICE_HOST/PORT are set in every container, as the
  kubelet does, to where the pod reaches the fake API server.
The pod's network is slirp4netns with `allow_host_loopback`, so the pod reaches the host's
127.0.0.1 (the fake API server's address) as 10.0.2.2 and nothing else of the host.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.support.netutil import free_port

__all__ = ["HOST_FROM_POD", "NETWORK", "Podman", "for_podman", "probe_ports", "probes"]

ROOT = Path(__file__).resolve().parent.parent.parent
CONTAINERS_CONF = ROOT / "scripts" / "containers.conf"
NETWORK = "slirp4netns:allow_host_loopback=true"
HOST_FROM_POD = "10.0.2.2"  # slirp4netns's address for the host's loopback
PROBES = ("startupProbe", "livenessProbe", "readinessProbe")
Obj = dict[str, Any]


def probes(container: Mapping[str, Any]) -> dict[str, Obj]:
    """The container's probes by kind (startupProbe, ...)."""
    return {kind: container[kind] for kind in PROBES if kind in container}


def probe_ports(container: Mapping[str, Any]) -> set[int]:
    """Every port the container's httpGet/tcpSocket probes name, as a number."""
    named = {p["name"]: p["containerPort"] for p in container.get("ports", []) if "name" in p}
    out = set()
    for probe in probes(container).values():
        action = probe.get("httpGet") or probe.get("tcpSocket")
        assert action, f"{container['name']}: only httpGet and tcpSocket probes are checked"
        port = action["port"]
        out.add(int(named[port]) if isinstance(port, str) else int(port))
    return out


def for_podman(deployment: Mapping[str, Any], name: str, secrets: Path,
               api_port: int) -> tuple[Obj, dict[int, int]]:
    """The Deployment changed as the module doc says, and its published ports:
    container port -> host port on 127.0.0.1."""
    out = copy.deepcopy(dict(deployment))
    out["metadata"]["name"] = name
    out["spec"]["replicas"] = 1
    pod = out["spec"]["template"]["spec"]
    published: dict[int, int] = {}
    for c in pod["containers"]:
        declared = {p["containerPort"] for p in c.get("ports", [])}
        for p in c.get("ports", []):
            host = published.setdefault(p["containerPort"], free_port())
            p.update(hostPort=host, hostIP="127.0.0.1")
        for port in sorted(probe_ports(c) - declared):
            host = published.setdefault(port, free_port())
            c.setdefault("ports", []).append(
                {"containerPort": port, "hostPort": host, "hostIP": "127.0.0.1",
                 "protocol": "TCP"})
        c["env"] = [*c.get("env", []),
                    {"name": "KUBERNETES_SERVICE_HOST", "value": HOST_FROM_POD},
                    {"name": "KUBERNETES_SERVICE_PORT", "value": str(api_port)}]
    for vol in pod["volumes"]:
        if "projected" in vol:
            del vol["projected"]
            vol["hostPath"] = {"path": str(secrets), "type": "Directory"}
    return out, published


class Podman:
    """`podman` with the project's containers.conf (unless CONTAINERS_CONF is set)."""

    def __init__(self) -> None:
        self.env = {**os.environ}
        self.env.setdefault("CONTAINERS_CONF", str(CONTAINERS_CONF))

    def run(self, *args: str, check: bool = True, timeout: float = 120.0
            ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(["podman", *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=False)
        if check and proc.returncode:
            raise AssertionError(f"podman {' '.join(args)} exited {proc.returncode}:\n"
                                 f"{proc.stdout}{proc.stderr}")
        return proc

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(["podman", *args], env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)

    def inspect(self, name: str) -> Obj:
        data = json.loads(self.run("container", "inspect", name).stdout)
        assert isinstance(data, list) and data
        return dict(data[0])
