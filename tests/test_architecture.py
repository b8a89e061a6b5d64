"""The layout the README promises, checked from the source: who may import whom, no import
cycles (type-only imports included), and no module past 450 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("skydns", "skyserve", "kube2etcd")
MAX_LINES = 450


def modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every project module ``name`` imports, wherever the import sits (also under
    TYPE_CHECKING and inside functions)."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in known)
    found.discard(name)
    return found


GRAPH = {name: imports(name, path, set(modules())) for name, path in modules().items()}


def top(name: str) -> str:
    return name.split(".")[0]


def test_the_shared_package_imports_neither_program() -> None:
    bad = {m: sorted(i for i in deps if top(i) != "skydns")
           for m, deps in GRAPH.items() if top(m) == "skydns"}
    assert not {m: d for m, d in bad.items() if d}


@pytest.mark.parametrize(("program", "other"), [("skyserve", "kube2etcd"),
                                                ("kube2etcd", "skyserve")])
def test_neither_program_imports_the_other(program: str, other: str) -> None:
    bad = {m: sorted(i for i in deps if top(i) == other)
           for m, deps in GRAPH.items() if top(m) == program}
    assert not {m: d for m, d in bad.items() if d}


def test_no_import_cycles() -> None:
    """A package's ``__init__`` importing its own modules is not a cycle; anything else is."""
    edges = {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in GRAPH.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(edges[node]):
            if state.get(dep) == 1:
                cycles.append([*path[path.index(dep):], dep])
            elif dep not in state:
                visit(dep, [*path, dep])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert not cycles


def test_no_module_is_longer_than_450_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for p in modules().values()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long


def test_the_readme_names_every_package_and_module() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [str(p.relative_to(ROOT)) for name, p in modules().items()
               if p.name != "__init__.py" or name in PACKAGES
               if f"`{p.name if p.name != '__init__.py' else name + '/'}`" not in readme]
    assert not missing
