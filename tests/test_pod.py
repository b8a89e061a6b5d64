"""The kube-dns pod, end to end: each container of the rendered Deployment runs its own command.

scripts/render-manifests renders the manifests; the Deployment's three containers (etcd,
kube2etcd, skyserve) then run as local processes with their own ``command``, changing only what
cannot work outside a cluster (see tests/pod_runner.py): ports move to free loopback ports, volume
paths to temporary directories, the programs to the local ones, and the bridge gets
``--kubeconfig`` for the fake API server (in the cluster it uses the service account). The
ConfigMap's skyserve.toml is used as-is except for its addresses and ``resolv-conf`` (never the
machine's resolver). The probes the manifest declares must answer 200, Services must resolve
through the running pod, and SIGTERM must end every container cleanly, skyserve after its
lameduck. If the manifest's arguments are wrong for the programs, this test fails.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubefake import FakeKubeAPI, endpoint_slice, namespace, service
from skyserve import config as skyserve_config
from tests.support.kubeconfig import write_kubeconfig
from tests.support.netutil import http_status
from tests.support.pod_runner import PortMap, Process, materialize_volumes, rewrite_args
from tests.support.resolver import Resolver

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
RENDER = ROOT / "scripts" / "render-manifests"
DOMAIN = "cluster.local"
IMAGE = "skyserve:pod-test"
WAIT = 20.0  # the longest any one thing may take to appear
# The only ConfigMap settings this test may change: where skyserve listens and finds etcd,
# and the resolver (the machine's resolv.conf names a private address).
LOCAL_ONLY = {"dns-addr", "health-addr", "ready-addr", "metrics-addr", "etcd-endpoints",
              "resolv-conf"}


def render(tmp: Path) -> dict[str, dict[str, Any]]:
    out = tmp / "kube-dns.yaml"
    subprocess.run([sys.executable, str(RENDER), "--domain", DOMAIN, "--image", IMAGE,
                    "-o", str(out)], check=True, timeout=30, capture_output=True)
    docs = [d for d in yaml.safe_load_all(out.read_text()) if d]
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in docs}


def console_scripts() -> dict[str, str]:
    """The programs the image installs (setup.py's console_scripts): name -> module."""
    text = (ROOT / "setup.py").read_text()
    return dict(re.findall(r"\"(\w[\w-]*)=(\w+)\.cli:main\"", text))


def child_env(container: dict[str, Any], extra: dict[str, str]) -> dict[str, str]:
    """This machine's environment without anything a program would read as its own settings,
    plus the container's `env` (plain values only) and `extra`."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SKYSERVE_", "KUBE2ETCD_", "ETCD_"))}
    for item in container.get("env", []):
        assert "value" in item, f"{container['name']}: env {item['name']} is not a plain value"
        env[item["name"]] = item["value"]
    env.update(extra)
    return env


def local_toml(text: str, ports: PortMap, resolv_conf: Path) -> str:
    """The ConfigMap's skyserve.toml with only its addresses and resolv-conf changed."""
    out = ports.rewrite(text)
    line = f"resolv-conf = {json.dumps(str(resolv_conf))}"
    out, n = re.subn(r"(?m)^resolv-conf\s*=.*$", line, out)
    if not n:  # the default would be /etc/resolv.conf
        out += f"\n{line}\n"
    before, after = tomllib.loads(text), tomllib.loads(out)
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert changed <= LOCAL_ONLY, f"rewriting changed more than addresses: {changed - LOCAL_ONLY}"
    assert after["resolv-conf"] == str(resolv_conf)
    return out


def probe_port(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, str):  # a named container port
        by_name = {p["name"]: p["containerPort"] for p in container.get("ports", [])
                   if "name" in p}
        assert port in by_name, f"{container['name']}: probe port {port!r} is not declared"
        return int(by_name[port])
    return port


def wait_status(port: int, path: str, want: int, what: str, logs: Callable[[], str],
                procs: list[Process], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while (status := http_status(port, path)) != want:
        dead = [f"{p.name} exited {p.returncode}" for p in procs if p.returncode is not None]
        if dead or time.monotonic() > deadline:
            raise AssertionError(f"{what}: GET {path} on the local port {port} answered "
                                 f"{status}, want {want}; {dead}\n{logs()}")
        time.sleep(0.1)


@pytest.fixture
def kube() -> Iterator[FakeKubeAPI]:
    with FakeKubeAPI(bookmark_interval=0.3, max_watch_seconds=5.0) as api:
        yield api


@pytest.mark.timeout(90)
def test_the_pod_runs_its_own_commands(etcd_binary: str, kube: FakeKubeAPI,
                                       tmp_path: Path) -> None:
    objects = render(tmp_path)
    deployment = objects["Deployment/kube-dns"]
    pod = deployment["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in pod["containers"]}
    assert list(containers) == ["etcd", "kube2etcd", "skyserve"]
    configmaps = {d["metadata"]["name"]: d for k, d in objects.items()
                  if k.startswith("ConfigMap/")}
    ports = PortMap()
    resolv_conf = tmp_path / "resolv.conf"
    resolv_conf.write_text("# no nameserver: the test never leaves loopback\noptions ndots:5\n")
    volumes = materialize_volumes(
        pod, configmaps, tmp_path,
        lambda key, text: local_toml(text, ports, resolv_conf) if key.endswith(".toml") else text)
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kube.url)
    programs = console_scripts()

    procs: list[Process] = []

    def logs() -> str:
        return "\n".join(p.log_tail() for p in procs)

    def argv_of(name: str) -> list[str]:
        c = containers[name]
        command = list(c.get("command", [])) + list(c.get("args", []))
        assert command, f"{name}: no command (the image's entrypoint is not run by this test)"
        mounts = {m["mountPath"]: volumes[m["name"]] for m in c.get("volumeMounts", [])}
        args = rewrite_args(command[1:], ports, mounts)
        if c["image"] == IMAGE:
            assert command[0] in programs, f"{name}: the image has no program {command[0]!r}"
            return [sys.executable, "-m", programs[command[0]], *args]
        assert command[0] in ("etcd", "/usr/local/bin/etcd"), f"{name}: runs {command[0]!r}"
        return [etcd_binary, *args]

    python_env = {"PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1",
                  "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    etcd_argv = argv_of("etcd")
    # etcd writes only into its data dir, which must be on a writable emptyDir (the root
    # filesystem is read-only).
    data_dirs = [a.split("=", 1)[1] for a in etcd_argv if a.startswith("--data-dir=")]
    emptydirs = {str(volumes[v["name"]]) for v in pod["volumes"] if "emptyDir" in v}
    writable = {str(volumes[m["name"]]) for m in containers["etcd"]["volumeMounts"]
                if not m.get("readOnly")}
    assert data_dirs and any(data_dirs[0].startswith(d + "/") for d in emptydirs & writable), \
        f"etcd --data-dir is not on a writable emptyDir: {etcd_argv}"
    bridge_argv = [*argv_of("kube2etcd"), "--kubeconfig", str(kubeconfig)]
    sky_argv = argv_of("skyserve")
    sky_config = skyserve_config.load(sky_argv[3:], {})
    lameduck = sky_config.lameduck
    grace = pod["terminationGracePeriodSeconds"]
    assert lameduck + 5 < grace, f"lameduck {lameduck}s does not fit in the grace period {grace}s"
    assert sky_config.resolv_conf == str(resolv_conf) and not sky_config.upstream

    try:
        # The kubelet starts the containers in order without waiting for one another.
        for name, argv in (("etcd", etcd_argv), ("kube2etcd", bridge_argv),
                           ("skyserve", sky_argv)):
            env = child_env(containers[name], python_env if name != "etcd" else {})
            procs.append(Process(name, argv, env, tmp_path, tmp_path).start())
        by_name = {p.name: p for p in procs}

        # Every probe the manifest declares answers 200 on the port it names.
        for name, c in containers.items():
            for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
                if kind not in c:
                    continue
                probe = c[kind]
                assert "httpGet" in probe, f"{name} {kind}: only httpGet probes are checked"
                get = probe["httpGet"]
                port = probe_port(c, get["port"])
                assert port in ports.ports, (f"{name} {kind}: port {port} is not a port any "
                                             f"program in the pod was told to listen on")
                wait_status(ports.known(port), get["path"], 200, f"{name} {kind}", logs, procs)
        # Every declared container port, and Prometheus's scrape port, is really served.
        for name, c in containers.items():
            for cp in c.get("ports", []):
                assert cp["containerPort"] in ports.ports, (
                    f"{name}: containerPort {cp['containerPort']} is not used by any program")
        annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
        if annotations.get("prometheus.io/scrape") == "true":
            scrape = int(annotations["prometheus.io/port"])
            wait_status(ports.known(scrape), annotations.get("prometheus.io/path", "/metrics"),
                        200, "prometheus scrape", logs, procs)
        for name, c in containers.items():
            for cp in c.get("ports", []):
                if cp.get("protocol", "TCP") == "TCP" and cp.get("name", "").endswith("metrics"):
                    wait_status(ports.known(cp["containerPort"]), "/metrics", 200,
                                f"{name} port {cp['name']}", logs, procs)
        # The kube-dns Service's ports lead to ports of skyserve's.
        sky = containers["skyserve"]
        targets = {(sp["protocol"], sp["port"]): probe_port(sky, sp.get("targetPort", sp["port"]))
                   for sp in objects["Service/kube-dns"]["spec"]["ports"]}
        declared = {(cp.get("protocol", "TCP"), cp["containerPort"]) for cp in sky["ports"]}
        assert {(proto, t) for (proto, _), t in targets.items()} <= declared, targets

        # Services through the running pod (where the Service's port 53 leads).
        assert targets[("UDP", 53)] == targets[("TCP", 53)], targets
        dns_port = ports.known(targets[("UDP", 53)])
        for ns in ("default", "kube-system", "shop"):
            kube.upsert("namespaces", namespace(ns))
        kube.upsert("services", service("shop", "web", ["10.96.7.7"],
                                        ports=[{"name": "http", "port": 80}]))
        kube.upsert("services", service("shop", "db", headless=True,
                                        ports=[{"name": "pg", "port": 5432}]))
        kube.upsert("endpointslices", endpoint_slice(
            "shop", "db-x1", "db", endpoints=["10.244.1.5", "10.244.2.6"],
            ports=[{"name": "pg", "port": 5432}]))
        kube.upsert("services", service("shop", "ext", type="ExternalName",
                                        external_name="www.example.org"))
        dns_q = Resolver(dns_port, logs, WAIT)
        svc = f"svc.{DOMAIN}."
        dns_q.expect(f"web.shop.{svc}", "A", {"10.96.7.7"})
        dns_q.expect(f"_http._tcp.web.shop.{svc}", "SRV", {f"80 web.shop.{svc}"})
        dns_q.expect(f"db.shop.{svc}", "A", {"10.244.1.5", "10.244.2.6"})
        dns_q.expect(f"ext.shop.{svc}", "CNAME", {"www.example.org."})
        dns_q.expect(f"dns-version.{DOMAIN}.", "TXT", {'"1.1.0"'})
        dns_q.expect("7.7.96.10.in-addr.arpa.", "PTR", {f"web.shop.{svc}"})

        # SIGTERM to every container at once, as the kubelet does.
        ready = sky["readinessProbe"]["httpGet"]
        ready_port, ready_path = ports.known(probe_port(sky, ready["port"])), ready["path"]
        for p in procs:
            p.terminate()
        start = time.monotonic()
        wait_status(ready_port, ready_path, 503, "skyserve lameduck", logs, [], timeout=1.5)
        while time.monotonic() - start < lameduck - 1.0:  # still answering, from memory
            assert by_name["skyserve"].returncode is None, logs()
            answers = dns_q.both(f"web.shop.{svc}", "A")
            assert answers == ({"10.96.7.7"}, {"10.96.7.7"}), f"in lameduck: {answers}\n{logs()}"
            assert http_status(ready_port, ready_path) == 503
            time.sleep(0.5)
        limits = {"etcd": 10.0, "kube2etcd": 10.0, "skyserve": lameduck + 5.0}
        for p in procs:
            code = p.wait(max(0.0, start + limits[p.name] - time.monotonic()))
            assert code is not None, f"{p.name} still running after SIGTERM\n{logs()}"
            assert p.exited_at is not None and p.exited_at - start < grace
            # etcd re-raises SIGTERM after its clean shutdown unless it is PID 1, which it is
            # in its container (exit 0 there).
            clean = (0, -signal.SIGTERM) if p.name == "etcd" else (0,)
            assert code in clean, f"{p.name} exited {code}\n{logs()}"
        took = by_name["skyserve"].exited_at - start  # type: ignore[operator]
        assert took >= lameduck - 0.5, f"skyserve stopped after {took:.1f}s, lameduck {lameduck}"
    finally:
        for p in procs:
            p.kill()
