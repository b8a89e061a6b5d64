"""Configuration precedence and validation: default < file < environment < flag."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from skydns.options import ConfigError, seconds
from skyserve.config import load


def test_defaults() -> None:
    c = load(["--zone", "cluster.local"], {})
    assert c.zone == ("cluster.local.",)
    assert c.etcd_endpoints == ("http://127.0.0.1:2379",)
    assert (c.dns_addr, c.health_addr, c.ready_addr) == ("0.0.0.0:53", ":8080", ":8181")
    assert (c.etcd_prefix, c.default_ttl, c.min_ttl, c.max_udp_size) == ("/skydns", 300, 30, 1232)


def test_precedence(tmp_path: Path) -> None:
    file = tmp_path / "skyserve.toml"
    file.write_text(
        'zone = ["a.example.", "b.example."]\ndefault-ttl = 60\nmin_ttl = 10\n'
        'etcd-endpoints = "http://10.0.0.1:2379,http://10.0.0.2:2379"\n'
    )
    env = {"SKYSERVE_CONFIG": str(file), "SKYSERVE_MIN_TTL": "20"}
    c = load(["--min-ttl", "25"], env)
    assert c.zone == ("a.example.", "b.example.") and c.default_ttl == 60 and c.min_ttl == 25
    assert c.etcd_endpoints == ("http://10.0.0.1:2379", "http://10.0.0.2:2379")
    assert load([], env).min_ttl == 20
    c = load(["--config", str(file), "--zone", "c.example", "--zone", "d.example"], {})
    assert c.zone == ("c.example.", "d.example.") and c.min_ttl == 10


def test_environment_lists_and_durations() -> None:
    c = load([], {"SKYSERVE_ZONE": "a.test, b.test", "SKYSERVE_ETCD_TIMEOUT": "1500ms"})
    assert c.zone == ("a.test.", "b.test.") and c.etcd_timeout == 1.5
    assert seconds("5m") == 300 and seconds(2) == 2.0 and seconds("1h") == 3600


@pytest.mark.parametrize(
    ("argv", "env", "names"),
    [
        ([], {}, "--zone"),
        (["--zone", "bad name"], {}, "--zone"),
        (["--zone", "a.test", "--default-ttl", "-1"], {}, "--default-ttl"),
        (["--zone", "a.test", "--min-ttl", "ten"], {}, "--min-ttl"),
        (["--zone", "a.test", "--dns-addr", "127.0.0.1:99999"], {}, "--dns-addr"),
        (["--zone", "a.test", "--etcd-endpoints", "ftp://x"], {}, "--etcd-endpoints"),
        (["--zone", "a.test", "--max-udp-size", "100"], {}, "--max-udp-size"),
        (["--zone", "a.test", "--etcd-prefix", "/"], {}, "--etcd-prefix"),
        (["--zone", "a.test"], {"SKYSERVE_DEFAULT_TTL": "x"}, "SKYSERVE_DEFAULT_TTL"),
        (["--zone", "a.test", "--etcd-username", "u"], {}, "--etcd-password"),
        (["--zone", "a.test", "--etcd-timeout", "soon"], {}, "--etcd-timeout"),
    ],
)
def test_bad_values_name_the_option(argv: list[str], env: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigError, match=names):
        load(argv, env)


def test_bad_config_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("zone = [\n")
    with pytest.raises(ConfigError, match=r"bad\.toml"):
        load(["--config", str(bad)], {})
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('zone = ["a.test"]\nzonez = 1\n')
    with pytest.raises(ConfigError, match="zonez"):
        load(["--config", str(unknown)], {})
    with pytest.raises(ConfigError, match=r"missing\.toml"):
        load(["--config", str(tmp_path / "missing.toml")], {})
    wrong_type = tmp_path / "type.toml"
    wrong_type.write_text('zone = ["a.test"]\ndefault-ttl = "soon"\n')
    with pytest.raises(ConfigError, match="default-ttl"):
        load(["--config", str(wrong_type)], {})


@pytest.mark.e2e
def test_cli_exits_non_zero_with_the_option_named() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "skyserve", "--zone", "a.test", "--min-ttl", "-5"],
        capture_output=True, text=True, timeout=30,
    )
    assert proc.returncode == 2
    assert "--min-ttl" in proc.stderr


@pytest.mark.e2e
def test_cli_port_in_use_fails_fast() -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "skyserve", "--zone", "a.test",
             "--dns-addr", f"127.0.0.1:{port}", "--health-addr", "127.0.0.1:0",
             "--ready-addr", "127.0.0.1:0"],
            capture_output=True, text=True, timeout=30,
        )
    assert proc.returncode == 1 and "in use" in proc.stderr


def test_help_lists_the_record_commands(capsys: pytest.CaptureFixture[str]) -> None:
    from skyserve.cli import main
    from skyserve.register import COMMANDS

    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    for command in COMMANDS:
        assert f"skyserve {command} " in text, command
        with pytest.raises(SystemExit) as sub:
            main([command, "--help"])
        assert sub.value.code == 0 and f"usage: skyserve {command}" in capsys.readouterr().out
