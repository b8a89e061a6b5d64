"""The test suite and the scripts keep their layout: shared code lives in tests/support/ and
conftest.py files (never in another test module), scripts never import test code or edit
sys.path, and a test that starts a process without the e2e marker fails."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(path: Path) -> Iterator[str]:
    """Every module an ``import`` statement in ``path`` names, ``from a import b`` as a.b."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            yield base
            yield from (f"{base}.{alias.name}".lstrip(".") if base else alias.name
                        for alias in node.names)


def is_test_module(name: str) -> bool:
    last = name.rsplit(".", 1)[-1]
    return last.startswith("test_") or last == "conftest"


def python_scripts() -> list[Path]:
    """scripts/'s Python: its packages and modules, and executables with a python shebang."""
    out = sorted((ROOT / "scripts").rglob("*.py"))
    for f in sorted((ROOT / "scripts").iterdir()):
        if f.is_file() and f.suffix == "" and f.read_text().startswith("#!/usr/bin/env python"):
            out.append(f)
    return out


def test_no_test_module_imports_another() -> None:
    offenders = [f"{path.relative_to(ROOT)}: {name}"
                 for path in sorted((ROOT / "tests").rglob("*.py"))
                 for name in imported_modules(path) if is_test_module(name)]
    assert not offenders, "shared fixtures go in conftest.py, helpers in tests/support/"


def test_scripts_neither_import_tests_nor_edit_sys_path() -> None:
    scripts = python_scripts()
    assert any(p.name == "bench-dns" for p in scripts)
    offenders = []
    for path in scripts:
        names = set(imported_modules(path))
        offenders += [f"{path.name}: imports {n}" for n in names if n.split(".")[0] == "tests"]
        tree = ast.parse(path.read_text(), str(path))
        offenders += [f"{path.name}:{node.lineno}: sys.path" for node in ast.walk(tree)
                      if isinstance(node, ast.Attribute) and node.attr == "path"
                      and isinstance(node.value, ast.Name) and node.value.id == "sys"]
    assert not offenders


@pytest.mark.e2e  # runs pytest in a subprocess
def test_an_unmarked_test_that_starts_a_process_fails(pytester: pytest.Pytester,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    pytester.makeini("[pytest]\naddopts = --strict-markers -p tests.support.e2e_guard\n"
                     "markers =\n    e2e: starts a process\n")
    pytester.makeconftest("import pytest\n\n@pytest.fixture\ndef etcd_binary():\n"
                          "    return '/bin/true'\n")
    pytester.makepyfile(test_inner='''
        import subprocess
        import pytest

        def test_unmarked_spawns():
            subprocess.run(["true"], check=True)

        def test_unmarked_needs_etcd(etcd_binary):
            pass

        def test_unmarked_in_process():
            assert sum(range(4)) == 6

        @pytest.mark.e2e
        def test_marked_spawns(etcd_binary):
            subprocess.run([etcd_binary], check=True)
    ''')
    result = pytester.runpytest_subprocess("-rf")
    result.assert_outcomes(passed=2, failed=1, errors=1)
    out = result.stdout.str()
    assert ("test_unmarked_spawns is not marked @pytest.mark.e2e but started a process during "
            "call: subprocess.Popen ['true']") in out
    assert ("test_unmarked_needs_etcd uses etcd (etcd_binary among its fixtures) but is not "
            "marked @pytest.mark.e2e") in out
