"""kube2etcd options: defaults, precedence, validation, and the CLI's exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from kube2etcd import cli
from kube2etcd.config import load
from skydns.options import ConfigError


def test_defaults() -> None:
    c = load([], {})
    assert (c.kubeconfig, c.domain, c.etcd_prefix, c.ttl) == (None, "cluster.local", "/skydns", 30)
    assert c.etcd_endpoints == ("http://127.0.0.1:2379",)
    assert (c.pods, c.endpoints_api, c.namespaces, c.label_selector) == (
        "disabled", "endpointslices", (), "")
    assert (c.resync_period, c.leader_elect, c.leader_lease_ttl) == (300.0, False, 15.0)
    assert c.zone.domain == ("cluster", "local") and c.zone.prefix == "/skydns"
    assert c.etcd.timeout == 5.0
    assert c.etcd_probe_interval == 2.0
    assert load(["--etcd-probe-interval", "0"], {}).etcd_probe_interval == 0.0


def test_precedence_default_file_env_flag(tmp_path: Path) -> None:
    file = tmp_path / "kube2etcd.toml"
    file.write_text('domain = "k8s.example.org"\nttl = 60\nnamespaces = ["a", "b"]\n'
                    'resync-period = "10m"\netcd_prefix = "/dns"\n')
    env = {"KUBE2ETCD_CONFIG": str(file), "KUBE2ETCD_TTL": "45"}
    c = load([], env)
    assert (c.domain, c.ttl, c.namespaces, c.resync_period, c.etcd_prefix) == (
        "k8s.example.org", 45, ("a", "b"), 600.0, "/dns")
    c = load(["--ttl", "5", "--namespaces", "x,y"], env)
    assert (c.ttl, c.namespaces) == (5, ("x", "y"))
    c = load(["--config", str(file)], {})
    assert c.ttl == 60


def test_flags() -> None:
    c = load(["--leader-elect", "--pods=verified", "--endpoints-api=endpoints",
              "--label-selector", "app in (a, b),tier!=db,!legacy", "--leader-lease-ttl", "2s",
              "--etcd-endpoints", "http://e1:2379,https://e2:2379", "--health-addr", ""], {})
    assert c.leader_elect and c.pods == "verified" and c.endpoints_api == "endpoints"
    assert c.label_selector == "app in (a, b),tier!=db,!legacy"
    assert c.leader_lease_ttl == 2.0 and c.health_addr == ""
    assert c.etcd_endpoints == ("http://e1:2379", "https://e2:2379")
    assert load(["--leader-elect", "false"], {}).leader_elect is False
    assert load([], {"KUBE2ETCD_LEADER_ELECT": "true"}).leader_elect is True


@pytest.mark.parametrize(
    ("argv", "env", "names"),
    [
        (["--domain", "bad domain"], {}, "--domain"),
        (["--domain", "."], {}, "--domain"),
        (["--pods", "insecure"], {}, "--pods"),
        (["--endpoints-api", "v1beta1"], {}, "--endpoints-api"),
        (["--namespaces", "Bad_NS"], {}, "--namespaces"),
        (["--label-selector", "a in b"], {}, "--label-selector"),
        (["--resync-period", "soon"], {}, "--resync-period"),
        (["--etcd-probe-interval", "10ms"], {}, "--etcd-probe-interval"),
        (["--ttl", "-1"], {}, "--ttl"),
        (["--leader-lease-ttl", "1s"], {}, "--leader-lease-ttl"),
        (["--etcd-endpoints", "ftp://x"], {}, "--etcd-endpoints"),
        (["--health-addr", "127.0.0.1:99999"], {}, "--health-addr"),
        (["--kubeconfig", "/nonexistent/kubeconfig"], {}, "--kubeconfig"),
        (["--etcd-username", "u"], {}, "--etcd-password"),
        ([], {"KUBE2ETCD_TTL": "x"}, "KUBE2ETCD_TTL"),
    ],
)
def test_bad_values_exit_2_naming_the_option(
    argv: list[str], env: dict[str, str], names: str, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ConfigError, match=names):
        load(argv, env)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("kube2etcd: error:") and names in err


def test_kubeconfig_that_is_not_one_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                            ) -> None:
    bad = tmp_path / "kubeconfig"
    bad.write_text("{}")
    assert cli.main(["--kubeconfig", str(bad), "--health-addr", "", "--metrics-addr", ""]) == 2
    assert "--kubeconfig" in capsys.readouterr().err
