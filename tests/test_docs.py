"""The README stays true: every option is documented, the first lines are the two commands."""

import re
from pathlib import Path

from skyserve.config import OPTIONS

ROOT = Path(__file__).resolve().parent.parent


def test_every_skyserve_option_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [o.name for o in OPTIONS if f"`--{o.name}`" not in readme]
    assert not missing


def test_readme_starts_with_the_two_commands() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()[:6]
    assert any(line.startswith("scripts/run-local") for line in lines)
    assert any(line.startswith("scripts/test") for line in lines)
    for script in ("run-local", "test"):
        assert (ROOT / "scripts" / script).stat().st_mode & 0o111


def test_every_kube2etcd_option_is_in_the_readme() -> None:
    from kube2etcd.config import OPTIONS as BRIDGE_OPTIONS

    readme = (ROOT / "README.md").read_text()
    missing = [o.name for o in BRIDGE_OPTIONS if f"`--{o.name}`" not in readme]
    assert not missing


def test_every_run_local_variable_is_in_the_readme_with_its_default() -> None:
    script = (ROOT / "scripts" / "run-local").read_text()
    readme = (ROOT / "README.md").read_text()
    # TMPDIR is the system's temporary directory, not a setting of run-local's own.
    variables = {name: default for name, default in re.findall(r"\$\{([A-Z_]+):-([^}]*)\}", script)
                 if name != "TMPDIR"}
    assert {"DNS_PORT", "ETCD_PORT", "HEALTH_PORT", "READY_PORT", "METRICS_PORT"} <= set(variables)
    for name, default in variables.items():
        documented = f"`{name}` ({default}" if default else f"`{name}"
        assert documented in readme, documented
