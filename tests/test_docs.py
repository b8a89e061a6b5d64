"""The README stays true: every option is documented, the first lines are the two commands."""

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
