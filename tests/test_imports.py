"""No import cycle in pruning/ or bench/: the imports of every module, read with ``ast``, form a DAG.

What counts as an edge ``a -> b`` (both modules of the tree):
- every ``import`` / ``from ... import`` statement, at module level **and inside functions** (a lazy
  import that closes a cycle is still a cycle: it only moves the failure to run time), relative ones
  resolved against the importing module's package;
- ``from P import x`` gives an edge to ``P.x`` when that is a module, and to ``P`` itself when any
  imported name is not a submodule (the name lives in ``P/__init__.py``);
- ``import a.b.c`` gives an edge to ``a.b.c`` only: importing a submodule runs its parent packages'
  ``__init__`` first, but a package importing its own submodules is how packages are built, not a cycle;
- imports under ``if TYPE_CHECKING:`` do not count (they never run); ``importlib.import_module`` calls
  (registries loading their plugins by name) are not statements and do not count.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pruning", "bench")


def modules(root: Path, packages=PACKAGES) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file of ``packages`` under ``root``."""
    out = {}
    for pkg in packages:
        for f in sorted((root / pkg).rglob("*.py")):
            parts = f.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = f
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST):
    """Every Import / ImportFrom node, skipping the bodies of ``if TYPE_CHECKING:`` (not their else)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
            continue
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _targets(name: str, path: Path, node: ast.Import | ast.ImportFrom, mods: dict[str, Path]) -> set[str]:
    if isinstance(node, ast.Import):
        return {a.name for a in node.names if a.name in mods}
    base = node.module or ""
    if node.level:
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join(package + ([base] if base else []))
    out = {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in mods}
    if base in mods and any(f"{base}.{a.name}" not in mods for a in node.names):
        out.add(base)
    return out


def import_graph(root: Path, packages=PACKAGES) -> dict[str, set[str]]:
    """Module -> the modules of the tree it imports (see the module docstring for what counts)."""
    mods = modules(root, packages)
    graph = {}
    for name, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        graph[name] = set().union(*(_targets(name, path, n, mods) for n in _import_nodes(tree))) - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (``[a, b, ..., a]``) per strongly connected component with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    comps: list[set[str]] = []

    def visit(v: str) -> None:  # Tarjan; the tree is small enough for recursion
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_path_in(graph, comp) for comp in comps]


def _path_in(graph: dict[str, set[str]], comp: set[str]) -> list[str]:
    """A shortest cycle through the smallest module of a strongly connected component (breadth first)."""
    start = min(comp)
    prev: dict[str, str] = {}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph[v] & comp):
            if w == start:
                path = [v]
                while path[-1] != start:
                    path.append(prev[path[-1]])
                return path[::-1] + [start]
            if w not in prev:
                prev[w] = v
                queue.append(w)
    raise AssertionError(f"{sorted(comp)} is not strongly connected")


def test_pruning_and_bench_have_no_import_cycle():
    found = cycles(import_graph(ROOT))
    assert not found, "import cycles:\n" + "\n".join("  " + " -> ".join(c) for c in found)


def test_the_graph_sees_every_module_and_their_imports():
    graph = import_graph(ROOT)
    assert {"pruning", "pruning.recipe", "pruning.registry", "bench.engine", "bench.measure.memory"} <= set(graph)
    assert "pruning.registry" in graph["pruning.recipe"]  # a relative import
    assert "pruning" in graph["bench.engine"]  # a name from a package's __init__


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        f = tmp_path / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)
    return tmp_path


@pytest.mark.parametrize("files, expected", [
    # a lazy (function-level) import closes the cycle
    ({"p/__init__.py": "", "p/a.py": "from .b import f\n", "p/b.py": "def f():\n    from . import a\n"},
     [["p.a", "p.b", "p.a"]]),
    # the package re-exports a name from a module that imports a name from the package
    ({"p/__init__.py": "from .a import x\n", "p/a.py": "from p import y\nx = 1\n"}, [["p", "p.a", "p"]]),
    # a three-module ring through an absolute and a two-dot relative import
    ({"p/__init__.py": "", "p/s/__init__.py": "", "p/s/a.py": "import p.b\n", "p/b.py": "from p.c import z\n",
      "p/c.py": "from .s import a\n"}, [["p.b", "p.c", "p.s.a", "p.b"]]),
    # TYPE_CHECKING imports never run; a package importing its submodules is no cycle
    ({"p/__init__.py": "from . import a\n", "p/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import T\n",
      "p/b.py": "from . import a\nfrom .. import q\n"}, []),
])
def test_cycles_are_found_and_named(tmp_path, files, expected):
    root = _tree(tmp_path, files)
    assert cycles(import_graph(root, ("p",))) == expected
