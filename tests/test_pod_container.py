"""The kube-dns pod in a real container runtime: the image built, the Deployment played by podman.

scripts/build-image builds the image (and, since no registry is reachable here, its Debian-made
base and the etcd sidecar's image); scripts/render-manifests points the Deployment at them; then
`podman play kube` runs the Deployment's pod with its ConfigMap (tests/support/podman_pod.py
says what stands in for the cluster). The bridge finds the fake API server the in-cluster way:
KUBERNETES_SERVICE_HOST/PORT, and the token, CA and namespace where the kubelet projects them;
the fake API speaks TLS with a CA made here. The only ConfigMap change is skyserve's
resolv-conf (never the machine's resolver). The tests run in order on one pod, the last one
stops it. Everything is checked from the host, as a kubelet and a client would: DNS through
the pod's published port over UDP and TCP, the probes on their published ports.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubefake import FakeKubeAPI, endpoint_slice, namespace, service
from skyserve import config as skyserve_config
from tests.support.dnsutil import key
from tests.support.netutil import http_status
from tests.support.podman_pod import HOST_FROM_POD, Pod, Podman, for_podman, probes
from tests.support.resolver import Resolver
from tests.support.tls import make_server_cert

pytestmark = [pytest.mark.e2e, pytest.mark.pod, pytest.mark.timeout(420)]

ROOT = Path(__file__).resolve().parent.parent
IMAGE, ETCD_IMAGE = "localhost/skyserve:pod-test", "localhost/skydns-etcd:pod-test"
DOMAIN = "cluster.local"
SVC = f"svc.{DOMAIN}."
WAIT = 30.0  # the longest any one thing may take to appear
TOOLS = ("podman", "runc", "slirp4netns", "debootstrap", "nsenter", "openssl")


@dataclass
class Running:
    pod: Pod
    kube: FakeKubeAPI
    token: str
    dns: Resolver
    deployment: dict[str, Any]  # as rendered
    lameduck: float

    @property
    def spec(self) -> dict[str, Any]:
        return dict(self.deployment["spec"]["template"]["spec"])

    def containers(self) -> dict[str, dict[str, Any]]:
        return {c["name"]: c for c in self.spec["containers"]}

    def etcdctl(self, *args: str) -> str:
        return self.pod.exec("etcd", "etcdctl", "--endpoints=http://127.0.0.1:2379", *args)


def render(tmp: Path) -> dict[str, dict[str, Any]]:
    out = tmp / "kube-dns.yaml"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "render-manifests"), "--domain",
                    DOMAIN, "--image", IMAGE, "--etcd-image", ETCD_IMAGE, "-o", str(out)],
                   check=True, timeout=30, capture_output=True)
    docs = [d for d in yaml.safe_load_all(out.read_text()) if d]
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in docs}


def service_account(directory: Path, ca: Path, ns: str) -> str:
    """What the kubelet projects into the bridge: token, ca.crt, namespace. Returns the token."""
    directory.mkdir(mode=0o755)
    token = secrets.token_hex(16)
    for name, text in (("token", token), ("ca.crt", ca.read_text()), ("namespace", ns)):
        (directory / name).write_text(text)
        (directory / name).chmod(0o644)  # the containers run as 65532
    return token


def local_resolver(cm: dict[str, Any]) -> None:
    """skyserve's resolv-conf moved to a file without nameservers in its own ConfigMap."""
    text = cm["data"]["skyserve.toml"]
    line = 'resolv-conf = "/etc/skyserve/resolv.conf"'
    new, n = re.subn(r"(?m)^resolv-conf\s*=.*$", line, text)
    assert n == 1, "the ConfigMap's skyserve.toml names no resolv-conf"
    cm["data"]["skyserve.toml"] = new
    cm["data"]["resolv.conf"] = "# no nameserver: the test never leaves the machine\n"


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    if missing := [t for t in TOOLS if shutil.which(t) is None]:
        subprocess.run([str(ROOT / "scripts" / "setup-podman")], check=True, timeout=300)
        assert not [t for t in TOOLS if shutil.which(t) is None], f"still missing: {missing}"
    subprocess.run([str(ROOT / "scripts" / "build-image"), "--base", "debian", "--tag", IMAGE,
                    "--etcd-tag", ETCD_IMAGE], check=True, timeout=360)
    tmp = tmp_path_factory.mktemp("pod")
    objects = render(tmp)
    deployment = objects["Deployment/kube-dns"]
    cert = make_server_cert(tmp, ["127.0.0.1", HOST_FROM_POD])
    token = service_account(tmp / "serviceaccount", cert.ca, deployment["metadata"]["namespace"])
    configmaps = {k.split("/", 1)[1]: d for k, d in objects.items() if k.startswith("ConfigMap/")}
    local_resolver(configmaps["kube-dns"])
    (tmp / "skyserve.toml").write_text(configmaps["kube-dns"]["data"]["skyserve.toml"])
    lameduck = skyserve_config.load([f"--config={tmp / 'skyserve.toml'}"], {}).lameduck
    with FakeKubeAPI(tls=cert.server_context()) as kube:
        docs, published = for_podman(deployment, configmaps, f"kube-dns-{os.getpid()}",
                                     tmp / "serviceaccount", kube.port)
        play = tmp / "play.yaml"
        play.write_text(yaml.safe_dump_all(docs))
        pod = Pod(Podman(), play, published)
        try:
            pod.start()
            sky = next(c for c in deployment["spec"]["template"]["spec"]["containers"]
                       if c["name"] == "skyserve")
            dns_port = next(p["containerPort"] for p in sky["ports"] if p["protocol"] == "UDP")
            yield Running(pod, kube, token, Resolver(published[dns_port], pod.logs, WAIT),
                          deployment, lameduck)
        finally:
            pod.down()


def proc_status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def mount_options(pid: int) -> dict[str, set[str]]:
    """Mount point (as the container sees it) -> its per-mount options."""
    out = {}
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        fields = line.split()
        out[fields[4]] = set(fields[5].split(","))
    return out


def wait_running(r: Running, name: str) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT
    while not (info := r.pod.container(name))["State"]["Running"] or not info["State"]["Pid"]:
        assert time.monotonic() < deadline, f"{name} is not running: {info['State']}\n" \
                                            f"{r.pod.logs()}"
        time.sleep(0.2)
    return info


def test_containers_run_as_the_manifest_says(running: Running) -> None:
    pod_sc = running.spec.get("securityContext", {})
    for name, c in running.containers().items():
        sc = {**pod_sc, **c.get("securityContext", {})}
        pid = int(wait_running(running, name)["State"]["Pid"])
        status, mounts = proc_status(pid), mount_options(pid)
        where = f"{name} (pid {pid})"
        assert status["Uid"].split() == [str(sc["runAsUser"])] * 4, (where, status["Uid"])
        assert status["Gid"].split() == [str(sc["runAsGroup"])] * 4, (where, status["Gid"])
        if sc.get("allowPrivilegeEscalation") is False:
            assert status["NoNewPrivs"] == "1", where
        if "ALL" in sc.get("capabilities", {}).get("drop", []):
            for caps in ("CapEff", "CapPrm", "CapBnd"):
                assert int(status[caps], 16) == 0, (where, caps, status[caps])
        if sc.get("readOnlyRootFilesystem"):
            assert "ro" in mounts["/"], (where, mounts["/"])
        for m in c.get("volumeMounts", []):
            # /var/run is a symbolic link to /run in the image.
            path = re.sub(r"^/var/run/", "/run/", m["mountPath"])
            assert path in mounts, f"{where}: {m['mountPath']} is not mounted"
            assert ("ro" in mounts[path]) == bool(m.get("readOnly")), (where, path, mounts[path])


def test_every_probe_answers_as_declared(running: Running) -> None:
    for name, c in running.containers().items():
        named = {p["name"]: p["containerPort"] for p in c.get("ports", []) if "name" in p}
        for kind, probe in probes(c).items():
            get = probe["httpGet"]
            assert get.get("scheme", "HTTP") == "HTTP", f"{name} {kind}: {get}"
            port = running.pod.published[named.get(get["port"], get["port"])]
            deadline = time.monotonic() + WAIT
            while (status := http_status(port, get["path"])) != 200:
                if time.monotonic() > deadline:
                    info = running.pod.container(name)
                    raise AssertionError(
                        f"{name} {kind}: GET {get['path']} on container port {get['port']} "
                        f"answered {status}; the container is {info['State']['Status']}, "
                        f"last exit code {info['State']['ExitCode']}, restarted "
                        f"{info['RestartCount']} times\n{running.pod.logs()}")
                time.sleep(0.2)


def web_service(running: Running) -> None:
    """Namespaces and the Service web.shop (10.96.7.7), resolving; so that each test that
    needs them can also run alone."""
    for ns in ("default", "kube-system", "shop"):
        running.kube.upsert("namespaces", namespace(ns))
    running.kube.upsert("services", service("shop", "web", ["10.96.7.7"],
                                            ports=[{"name": "http", "port": 80}]))
    running.dns.expect(f"web.shop.{SVC}", "A", {"10.96.7.7"})


def test_services_and_etcd_records_resolve_through_the_pod(running: Running) -> None:
    kube, dns = running.kube, running.dns
    web_service(running)
    kube.upsert("services", service("shop", "db", headless=True,
                                    ports=[{"name": "pg", "port": 5432}]))
    kube.upsert("endpointslices", endpoint_slice(
        "shop", "db-x1", "db", endpoints=["10.244.1.5", "10.244.2.6"],
        ports=[{"name": "pg", "port": 5432}]))
    kube.upsert("services", service("shop", "ext", type="ExternalName",
                                    external_name="www.example.org"))
    dns.expect(f"_http._tcp.web.shop.{SVC}", "SRV", {f"80 web.shop.{SVC}"})
    dns.expect(f"db.shop.{SVC}", "A", {"10.244.1.5", "10.244.2.6"})
    dns.expect(f"ext.shop.{SVC}", "CNAME", {"www.example.org."})
    dns.expect("7.7.96.10.in-addr.arpa.", "PTR", {f"web.shop.{SVC}"})
    # Dynamic registration: a record written straight into the pod's etcd.
    running.etcdctl("put", key("/skydns", f"box.dyn.{DOMAIN}"), '{"host": "10.1.2.3"}')
    dns.expect(f"box.dyn.{DOMAIN}.", "A", {"10.1.2.3"})
    # The bridge got there the in-cluster way: TLS verified with the projected CA, the
    # projected token on every request.
    seen = kube.requests
    assert {r.verb for r in seen} >= {"list", "watch"}, seen
    assert {r.token for r in seen} == {running.token}, {r.token for r in seen}


def test_every_container_stays_up(running: Running) -> None:
    for name in running.containers():
        info = running.pod.container(name)
        assert info["State"]["Running"] and info["RestartCount"] == 0, (
            f"{name}: {info['State']} restarts {info['RestartCount']}\n{running.pod.logs()}")


def test_a_killed_etcd_restarts_with_its_records(running: Running) -> None:
    dns, pod = running.dns, running.pod
    web_service(running)
    running.etcdctl("put", key("/skydns", f"keep.dyn.{DOMAIN}"), '{"host": "10.1.2.4"}')
    dns.expect(f"keep.dyn.{DOMAIN}.", "A", {"10.1.2.4"})
    before = pod.container("etcd")
    health = next(p["livenessProbe"]["httpGet"] for n, p in running.containers().items()
                  if n == "etcd")
    os.kill(int(before["State"]["Pid"]), signal.SIGKILL)  # a crash, not a stop
    deadline = time.monotonic() + WAIT
    while True:  # skyserve answers from memory while etcd is down and restarting
        assert dns.both(f"keep.dyn.{DOMAIN}.", "A") == ({"10.1.2.4"},) * 2, pod.logs()
        info = pod.container("etcd")
        if (info["RestartCount"] > before["RestartCount"] and info["State"]["Running"]
                and http_status(pod.published[health["port"]], health["path"]) == 200):
            break
        assert time.monotonic() < deadline, f"etcd was not restarted: {info['State']}"
        time.sleep(0.1)
    # The emptyDir kept the data, and skyserve follows the restarted etcd.
    assert "10.1.2.4" in running.etcdctl("get", key("/skydns", f"keep.dyn.{DOMAIN}"))
    running.etcdctl("put", key("/skydns", f"after.dyn.{DOMAIN}"), '{"host": "10.1.2.5"}')
    dns.expect(f"after.dyn.{DOMAIN}.", "A", {"10.1.2.5"})
    running.kube.upsert("services", service("shop", "late", ["10.96.8.8"]))
    dns.expect(f"late.shop.{SVC}", "A", {"10.96.8.8"})
    dns.expect(f"web.shop.{SVC}", "A", {"10.96.7.7"})


def finished_at(info: dict[str, Any]) -> float:
    """The container's exit time (podman gives nanoseconds; datetime takes microseconds)."""
    text = re.sub(r"(\.\d{6})\d*", r"\1", info["State"]["FinishedAt"])
    return datetime.fromisoformat(text).timestamp()


def test_pod_stop_drains_through_the_lameduck(running: Running) -> None:
    pod, grace = running.pod, int(running.spec["terminationGracePeriodSeconds"])
    sky = running.containers()["skyserve"]
    ready = sky["readinessProbe"]["httpGet"]
    dns_port = next(p["containerPort"] for p in sky["ports"] if p["protocol"] == "UDP")
    web_service(running)
    # Watched from inside the pod's network namespace (see tests/support/netns_probe.py).
    watcher = subprocess.Popen(
        ["nsenter", f"--net=/proc/{pod.pid('skyserve')}/ns/net", sys.executable, "-m",
         "tests.support.netns_probe", f"--dns-port={dns_port}", f"--ready-port={ready['port']}",
         f"--ready-path={ready['path']}", f"--name=web.shop.{SVC}",
         f"--seconds={running.lameduck + 3}"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert watcher.stdout is not None
    first = json.loads(watcher.stdout.readline())
    assert first["ready"] == 200 and first["udp"] == first["tcp"] == ["10.96.7.7"], first
    start, wall = time.monotonic(), time.time()
    stop = pod.podman.run("pod", "stop", "-t", str(grace), pod.name, timeout=grace + 30)
    took = time.monotonic() - start
    samples = [json.loads(line) for line in watcher.stdout]
    watcher.wait(10)
    assert stop.returncode == 0 and took < grace, (took, stop.stderr)
    after = [s for s in samples if s["t"] > start]
    turned = next((s["t"] - start for s in after if s["ready"] == 503), None)
    assert turned is not None and turned < 2.0, f"readiness never turned 503: {after}"
    lameduck = [s for s in after if s["t"] < start + running.lameduck - 1.0]
    assert len(lameduck) >= 5, after
    for s in lameduck:  # still answering from memory while it is taken out of the Service
        assert s["udp"] == s["tcp"] == ["10.96.7.7"], f"in lameduck: {s}\n{pod.logs()}"
        if s["t"] - start >= turned:
            assert s["ready"] == 503, s
    for name in running.containers():
        info = pod.container(name)
        assert info["State"]["ExitCode"] == 0, f"{name}: {info['State']}\n{pod.logs()}"
        assert finished_at(info) - wall < grace, (name, info["State"])
    sky_took = finished_at(pod.container("skyserve")) - wall
    assert sky_took >= running.lameduck - 0.5, f"skyserve stopped after {sky_took:.1f}s"
