"""The project's structure as tests: the import-linter contracts of setup.cfg hold
(layers edge.core -> calib_data -> quant -> targets -> benchmarks -> edge), the
forbidden list names every module of edge/ but edge.core, edge.core imports no
other project module, no two project modules import each other in a cycle, and
no module is over 500 lines."""
from __future__ import annotations

import ast
import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("edge", "calib_data", "quant", "targets", "benchmarks")
MAX_LINES = 500


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for p in (ROOT / pkg).rglob("*.py"):
            parts = p.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            mods[name] = p
    return mods


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """Project modules ``path`` imports (at any depth of the file), most specific name."""
    out: set[str] = set()
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            cands = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                pkg = pkg[:len(pkg) - node.level + 1]
                base = ".".join(pkg + ([base] if base else []))
            cands = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for c in cands:
            while c and c not in known:
                c = c.rpartition(".")[0]
            if c and c != name:
                out.add(c)
                break
    return out


def test_import_linter_contracts_hold():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if exe is None:
        pytest.fail("lint-imports (import-linter) is not installed: it is a test dependency")
    r = subprocess.run([exe, "--config", str(ROOT / "setup.cfg")], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]


def test_forbidden_list_names_every_module_of_edge_but_core():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    forbidden = set(cfg["importlinter:contract:edge-on-top"]["forbidden_modules"].split())
    children = {f"edge.{p.stem if p.is_file() else p.name}" for p in (ROOT / "edge").iterdir()
                if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()}
    assert children - {"edge.core"} == forbidden


def test_edge_core_imports_no_other_project_module():
    mods = _modules()
    for name, path in mods.items():
        if name.startswith("edge.core"):
            bad = {m for m in _imports(path, name, set(mods)) if not m.startswith("edge.core")}
            assert not bad, f"{name} imports {sorted(bad)}"


def test_no_import_cycles_between_project_modules():
    mods = _modules()
    graph = {n: {m for m in _imports(p, n, set(mods)) if not n.startswith(m + ".")} for n, p in mods.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_no_module_over_500_lines():
    long = {str(p.relative_to(ROOT)): n for p in _modules().values()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, long
