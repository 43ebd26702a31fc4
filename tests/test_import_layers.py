"""The package reads in one direction: data → models → train → evaluate → tune → analysis → cli.

Walks every `import` in raybio/ (at module level and inside functions; `if TYPE_CHECKING:`
imports are annotations only and do not count) and checks that no module imports a layer
above its own and that the module graph has no cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "raybio"

# Lower number = lower layer. A module may import its own layer and the ones below.
LAYERS = {
    "raybio": 0,  # the package itself (its __init__ imports nothing)
    "raybio.schema": 0,
    "raybio.cluster": 0,  # starts or attaches to Ray; imports nothing of raybio
    "raybio.units": 0,  # SI prefixes for labels and reports
    "raybio.data": 1,
    "raybio.models": 2,
    "raybio.config": 3,  # the experiment: data + model + training configs
    "raybio.train": 4,
    "raybio.evaluate": 5,
    "raybio.tune": 6,
    "raybio.export": 7,
    "raybio.analysis": 7,
    "raybio.study": 8,
    "raybio.cli": 9,
}


def layer(module: str) -> int:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in LAYERS:
            return LAYERS[".".join(parts[:n])]
    raise KeyError(f"{module} belongs to no layer: add its package to LAYERS")


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_blocks(tree: ast.AST) -> set[int]:
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """raybio modules that `path` imports (resolved to the longest known module name)."""
    tree = ast.parse(path.read_text())
    skip = _type_checking_blocks(tree)
    names = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from pkg import submodule` depends on the submodule; `from pkg import name` on pkg.
            names.update(f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                         for a in node.names)  # fmt: skip
    found = set()
    for name in names:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        if name.startswith("raybio"):
            found.add(name)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in ROOT.rglob("*.py")}
    modules = set(files)
    return {m: imports_of(p, modules) - {m} for m, p in files.items()}


def test_every_module_belongs_to_a_layer(graph):
    for m in graph:
        layer(m)


def test_no_module_imports_a_layer_above_its_own(graph):
    upward = sorted(f"{m} -> {d}" for m, deps in graph.items() for d in deps if layer(d) > layer(m))
    assert not upward, "imports against the direction data -> models -> ... -> cli:\n" + "\n".join(upward)


def test_the_module_graph_has_no_cycle(graph):
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    cycles = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                cycles.append(" -> ".join([*path[path.index(d) :], d]))
            elif d not in state:
                visit(d, [*path, d])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_checker_sees_an_upward_import_and_a_cycle():
    graph = {"raybio.data.a": {"raybio.train.b"}, "raybio.train.b": {"raybio.data.a"}}
    assert [d for m, ds in graph.items() for d in ds if layer(d) > layer(m)] == ["raybio.train.b"]
