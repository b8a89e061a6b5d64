"""scripts/render-manifests: valid Kubernetes objects, offline, for any cluster's values."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from skyserve import config as skyserve_config

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
RENDER = ROOT / "scripts" / "render-manifests"


def render(*args: str) -> str:
    out = subprocess.run([sys.executable, str(RENDER), *args], capture_output=True, text=True,
                         timeout=30, check=True)
    return out.stdout


def docs(text: str) -> dict[str, Any]:
    return {d["kind"]: d for d in yaml.safe_load_all(text) if d}


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("kubernetes-validate") or str(Path(sys.executable).parent /
                                                       "kubernetes-validate")
    return subprocess.run([tool, "--strict", str(path)], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("args", [
    [],
    ["--domain", "corp.example", "--dns-ip", "172.20.0.10", "--image", "reg.example/sky:1.2",
     "--replicas", "3"],
    ["--dns-ip", "fd00:10:96::a"],
])
def test_rendered_manifests_validate_strictly(tmp_path: Path, args: list[str]) -> None:
    path = tmp_path / "kube-dns.yaml"
    path.write_text(render(*args))
    result = validate(path)
    assert result.returncode == 0, result.stdout + result.stderr
    kinds = docs(path.read_text())
    assert set(kinds) == {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap",
                          "Deployment", "Service", "PodDisruptionBudget"}


def test_values_land_where_they_belong(tmp_path: Path) -> None:
    kinds = docs(render("--domain", "corp.example", "--dns-ip", "172.20.0.10",
                        "--image", "reg.example/sky:1.2"))
    assert kinds["Service"]["spec"]["clusterIP"] == "172.20.0.10"
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in pod["containers"]}
    assert set(containers) == {"etcd", "kube2etcd", "skyserve"}
    images = {containers[n]["image"] for n in ("skyserve", "kube2etcd")}
    assert images == {"reg.example/sky:1.2"}
    assert "--domain=corp.example" in containers["kube2etcd"]["command"]
    toml = tmp_path / "skyserve.toml"
    toml.write_text(kinds["ConfigMap"]["data"]["skyserve.toml"])
    config = skyserve_config.load(["--config", str(toml)], {})
    assert config.zone == ("corp.example.", "in-addr.arpa.", "ip6.arpa.")
    assert config.fallthrough == ("in-addr.arpa.", "ip6.arpa.")


def test_pod_conventions() -> None:
    kinds = docs(render())
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    assert pod["dnsPolicy"] == "Default"
    assert pod["automountServiceAccountToken"] is False
    containers = {c["name"]: c for c in pod["containers"]}
    for c in containers.values():
        assert "livenessProbe" in c, c["name"]
        ctx = c["securityContext"]
        assert ctx["allowPrivilegeEscalation"] is False and ctx["readOnlyRootFilesystem"] is True
        assert c["resources"]["limits"]["memory"]
    # Readiness only on skyserve; only the bridge sees the API token.
    assert [n for n, c in containers.items() if "readinessProbe" in c] == ["skyserve"]
    mounts = {n: {m["name"] for m in c.get("volumeMounts", [])} for n, c in containers.items()}
    assert [n for n, m in mounts.items() if "api-token" in m] == ["kube2etcd"]
    lameduck = 5
    assert pod["terminationGracePeriodSeconds"] > lameduck + 10
    rules = kinds["ClusterRole"]["rules"]
    assert {v for r in rules for v in r["verbs"]} == {"list", "watch"}
    ports = {(p["port"], p["protocol"]) for p in kinds["Service"]["spec"]["ports"]}
    assert ports == {(53, "UDP"), (53, "TCP"), (9153, "TCP")}


def test_committed_manifest_is_the_default_rendering() -> None:
    assert (ROOT / "manifests" / "kube-dns.yaml").read_text() == render()


@pytest.mark.parametrize("args", [["--domain", "bad domain"], ["--dns-ip", "10.96.0"],
                                  ["--replicas", "0"], ["--skyserve-memory", "lots"]])
def test_bad_values_are_refused(args: list[str]) -> None:
    result = subprocess.run([sys.executable, str(RENDER), *args], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 2 and args[0] in result.stderr
