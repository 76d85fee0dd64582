"""Imports go one way (ARCHITECTURE.md): `schemas` depends on nothing of the project;
`connectors`, `pipelines` and `warehouse` on `schemas` alone; only the wiring (flows.py,
cli.py, resolution.py, district_stage.py, …) joins them. `pipelines` are pure: no
Prefect, no database driver of a source. Checked on the source, every import statement,
including the lazy ones inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = {p.stem for p in ROOT.glob("*.py")} | {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}

#: package → the project's top-level modules it may import
ALLOWED = {
    "schemas": set(),
    "connectors": {"schemas"},
    "pipelines": {"schemas"},
    "warehouse": {"schemas"},
}
#: third-party packages a stage may not import
FORBIDDEN = {"pipelines": {"prefect", "sqlalchemy", "paramiko", "requests", "httpx"},
             "schemas": {"prefect", "duckdb", "sqlalchemy"}}


def _imports(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name.split(".")[0]) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module.split(".")[0]))
    return out


def test_the_project_modules_are_found():
    assert {"schemas", "connectors", "pipelines", "warehouse", "flows"} <= PROJECT


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_go_one_way(package):
    wrong = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, top in _imports(path):
            if top in PROJECT and top != package and top not in ALLOWED[package]:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {top}")
            if top in FORBIDDEN.get(package, set()):
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {top}")
    assert not wrong, "\n".join(wrong)


def test_the_checker_sees_a_wrong_import(tmp_path):
    bad = tmp_path / "m.py"
    bad.write_text("def f():\n    from warehouse import store\n    import prefect\n", encoding="utf-8")
    assert _imports(bad) == [(2, "warehouse"), (3, "prefect")]


def test_no_script_shadows_a_project_module():
    """A script runs with its own folder first on sys.path: a benchmark named like a
    top-level module (tests/benchmarks/engines.py) made `import engines` inside the sync
    import the benchmark, and `accuracy.py` failed."""
    scripts = {p.stem for p in (ROOT / "tests" / "benchmarks").glob("*.py")} - {"__init__"}
    assert not scripts & PROJECT, scripts & PROJECT
