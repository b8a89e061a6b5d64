"""Run the rendered kube-dns Deployment as a real pod with `podman play kube`.

The pod spec is played as rendered except for what stands in for a cluster, always the same way
(`for_podman`):
* the Deployment gets a name of the test's own and one replica (podman plays one pod);
* the ports the test talks to (the declared container ports and every probe's port) are
  published on 127.0.0.1 with `hostPort`s, since the test, like a kubelet, probes from outside;
* the projected service-account volume (which only a kubelet can fill) becomes a read-only
  hostPath directory holding what the kubelet would put there: token, ca.crt and namespace,
  mounted at the same path; KUBERNETES_SERVICE_HOST/PORT are set in every container, as the
  kubelet does, to where the pod reaches the fake API server;
* the pod's volumes and ConfigMaps get the test's name as a suffix (podman names the volumes
  it makes for them machine-wide).
The pod's network is slirp4netns with `allow_host_loopback`: the pod reaches the host's
loopback, where the fake API server listens on 127.0.0.1 only, as 10.0.2.2.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from tests.support.netutil import free_port

__all__ = ["HOST_FROM_POD", "NETWORK", "Pod", "Podman", "for_podman", "probe_ports", "probes"]

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


def for_podman(deployment: Mapping[str, Any], configmaps: Mapping[str, Mapping[str, Any]],
               name: str, secrets: Path, api_port: int) -> tuple[list[Obj], dict[int, int]]:
    """The documents to play (the ConfigMaps the pod uses, then the Deployment), changed as
    the module doc says, and the published ports: container port -> host port on 127.0.0.1.
    Podman names a pod's volumes after the pod volume or ConfigMap, machine-wide: they get
    the suffix `-name` so that pods of concurrent runs never share one."""
    out = copy.deepcopy(dict(deployment))
    out["metadata"]["name"] = name
    out["spec"]["replicas"] = 1
    pod = out["spec"]["template"]["spec"]
    published: dict[int, int] = {}
    for c in pod["containers"]:
        declared = {p["containerPort"] for p in c.get("ports", [])}
        for p in c.get("ports", []):
            p.update(hostPort=published.setdefault(p["containerPort"], free_port()),
                     hostIP="127.0.0.1")
        for port in sorted(probe_ports(c) - declared):
            c.setdefault("ports", []).append(
                {"containerPort": port, "hostPort": published.setdefault(port, free_port()),
                 "hostIP": "127.0.0.1", "protocol": "TCP"})
        c["env"] = [*c.get("env", []),
                    {"name": "KUBERNETES_SERVICE_HOST", "value": HOST_FROM_POD},
                    {"name": "KUBERNETES_SERVICE_PORT", "value": str(api_port)}]
        for m in c.get("volumeMounts", []):
            m["name"] += f"-{name}"
    docs = []
    for vol in pod["volumes"]:
        vol["name"] += f"-{name}"
        if "projected" in vol:
            del vol["projected"]
            vol["hostPath"] = {"path": str(secrets), "type": "Directory"}
        if "configMap" in vol:
            cm = copy.deepcopy(dict(configmaps[vol["configMap"]["name"]]))
            vol["configMap"]["name"] = cm["metadata"]["name"] = f"{cm['metadata']['name']}-{name}"
            docs.append(cm)
    return [*docs, out], published


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

    def inspect(self, kind: str, name: str) -> Obj:
        data = json.loads(self.run(kind, "inspect", name).stdout)
        return dict(data[0] if isinstance(data, list) else data)


class Pod:
    """One pod played from `play_file`; containers are addressed by their manifest names."""

    def __init__(self, podman: Podman, play_file: Path, published: Mapping[int, int]) -> None:
        self.podman, self.play_file, self.published = podman, play_file, dict(published)
        self.name = ""
        self.ids: dict[str, str] = {}  # manifest container name -> podman container id

    def start(self) -> Pod:
        self.podman.run("play", "kube", "--network", NETWORK, str(self.play_file))
        docs = [d for d in yaml.safe_load_all(self.play_file.read_text()) if d]
        deployment = next(d for d in docs if d["kind"] == "Deployment")
        wanted = [c["name"] for c in deployment["spec"]["template"]["spec"]["containers"]]
        # Podman names the pod <deployment>-pod-<replica> and each container <pod>-<name>.
        pods = self.podman.run("pod", "ps", "-q", "--filter",
                               f"name=^{deployment['metadata']['name']}-pod").stdout.split()
        assert len(pods) == 1, f"podman made pods {pods}"
        info = self.podman.inspect("pod", pods[0])
        self.name = info["Name"]
        by_name = {c["Name"]: c["Id"] for c in info["Containers"]}
        self.ids = {n: by_name[f"{self.name}-{n}"] for n in wanted}
        return self

    def container(self, name: str) -> Obj:
        return self.podman.inspect("container", self.ids[name])

    def pid(self, name: str) -> int:
        return int(self.container(name)["State"]["Pid"])

    def exec(self, name: str, *argv: str) -> str:
        return self.podman.run("exec", self.ids[name], *argv, timeout=30).stdout

    def logs(self, lines: int = 25) -> str:
        out = []
        for name, cid in self.ids.items():
            proc = self.podman.run("logs", "--tail", str(lines), cid, check=False)
            out.append(f"----- {name} -----\n{proc.stdout}{proc.stderr}")
        return "\n".join(out)

    def down(self) -> None:
        """Remove the pod, its containers and the volumes podman made for it."""
        self.podman.run("play", "kube", "--down", str(self.play_file), check=False)
        docs = [d for d in yaml.safe_load_all(self.play_file.read_text()) if d]
        deployment = next(d for d in docs if d["kind"] == "Deployment")
        for vol in deployment["spec"]["template"]["spec"]["volumes"]:
            name = vol["configMap"]["name"] if "configMap" in vol else vol["name"]
            if "hostPath" not in vol:
                self.podman.run("volume", "rm", "-f", name, check=False)
