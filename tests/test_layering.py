"""The package's layering (docs/architecture.md): imports point down, never in a circle.

Every ``import`` statement in ``solver/`` counts, including those inside functions and under
``TYPE_CHECKING``: a lazy import still couples the modules, and hiding a circle inside a
function is exactly what this test exists to refuse.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "solver"

#: The layers from the ground up (docs/architecture.md).  A module may import modules of its
#: own layer or of a lower one; the longest matching prefix names a module's layer.  A new
#: module or package must be placed here deliberately (test_every_module_has_a_layer).
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "ground",
        (
            "solver.errors",
            "solver.specs",
            "solver.catalog",
            "solver.result",
            "solver.io",
            "solver.hf",
            "solver.layout",
        ),
    ),
    ("physics", ("solver.costmodel", "solver.placement", "solver.engines")),
    ("verify", ("solver.evaluate", "solver.profile", "solver.serving")),
    ("solve", ("solver.construction", "solver.cpsat", "solver.baselines")),
    ("plan", ("solver.planner", "solver.objective_proof", "solver.plan_verify")),
    ("use", ("solver.pareto", "solver.sweep", "solver.export", "solver.report")),
    ("cli", ("solver.commands", "solver.cli", "solver.__main__", "solver")),
)

#: Third-party packages a layer must never load (checked in a fresh interpreter).
SOLVER_ONLY = ("ortools",)


def module_names(package: Path = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> file, for every module under ``package``."""
    out: dict[str, Path] = {}
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _targets(module: str, is_package: bool, node: ast.AST, known: Mapping[str, Path]) -> set[str]:
    """The modules of ``known`` one import statement in ``module`` loads by name."""
    found: set[str] = set()
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name in known:
                found.add(alias.name)
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            base = module.split(".")
            if not is_package:
                base = base[:-1]
            base = base[: len(base) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        for alias in node.names:
            sub = f"{target}.{alias.name}"
            if sub in known:
                found.add(sub)
            elif target in known:
                found.add(target)
    return found


def import_graph(known: Mapping[str, Path]) -> dict[str, set[str]]:
    """module -> modules it imports (within ``known``).

    A submodule's implicit load of its parent packages is not an edge (Python runs the
    parents' ``__init__`` first; that is the package, not a dependency), except the root
    package ``solver``, the public façade at the top: importing it from inside is upward.
    """
    graph: dict[str, set[str]] = {}
    for module, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        edges: set[str] = set()
        for node in ast.walk(tree):
            for target in _targets(module, is_package, node, known):
                ancestor = module.startswith(target + ".") and "." in target
                if target != module and not ancestor:
                    edges.add(target)
        graph[module] = edges
    return graph


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, list[str]]] = [(start, sorted(graph.get(start, ())))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, pending = work[-1]
            if pending:
                nxt = pending.pop()
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, sorted(graph.get(nxt, ()))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def layer_of(module: str) -> int | None:
    """The index of ``module``'s layer (longest matching prefix), None if unplaced."""
    best: tuple[int, int] | None = None  # (prefix length, layer)
    for level, (_name, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > best[0]:
                    best = (len(prefix), level)
    return None if best is None else best[1]


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(module_names())


def test_cycle_finder_finds_a_planted_circle() -> None:
    """The cycle finder reports a circle of three and ignores a chain (it can fail)."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_import_graph_sees_lazy_imports(tmp_path: Path) -> None:
    """An import inside a function is an edge, so a circle hidden in a function is found."""
    pkg = tmp_path / "solver"
    (pkg / "low").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "low" / "__init__.py").write_text("")
    (pkg / "low" / "a.py").write_text("def f():\n    from ..high import b\n")
    (pkg / "high.py").write_text("from .low import a\n")
    found = cycles(import_graph(module_names(pkg)))
    assert found == [["solver.high", "solver.low.a"]]


def test_no_import_circle_in_solver(graph: dict[str, set[str]]) -> None:
    """No two modules of solver/ import each other, directly or around a loop."""
    assert cycles(graph) == []


def test_every_module_has_a_layer(graph: dict[str, set[str]]) -> None:
    """Every module is placed in a layer, so a new package is placed deliberately."""
    assert [m for m in sorted(graph) if layer_of(m) is None] == []


def test_imports_point_down(graph: dict[str, set[str]]) -> None:
    """No module imports a module of a higher layer."""
    upward = [
        f"{m} ({LAYERS[layer_of(m) or 0][0]}) imports {t} ({LAYERS[layer_of(t) or 0][0]})"
        for m, targets in sorted(graph.items())
        for t in sorted(targets)
        if (layer_of(t) or 0) > (layer_of(m) or 0)
    ]
    assert upward == []


@pytest.mark.parametrize("package", ["solver.costmodel", "solver.evaluate", "solver.serving"])
def test_verifier_loads_no_solver(package: str) -> None:
    """Importing the cost model or the evaluator loads no ortools and nothing above it."""
    code = (
        f"import sys, {package}\n"
        "print('\\n'.join(sorted(m for m in sys.modules if m.split('.')[0] in "
        f"{SOLVER_ONLY!r} or m.startswith(('solver.cpsat', 'solver.planner', "
        "'solver.plan_verify', 'solver.baselines', 'solver.construction', 'solver.cli', "
        "'solver.commands')))))"
    )
    # The root package's façade imports the planner lazily; import the subpackage through a
    # bare parent so only what the subpackage itself needs is loaded.
    bootstrap = (
        "import sys, types, pathlib\n"
        f"pkg = types.ModuleType('solver'); pkg.__path__ = [{str(PACKAGE)!r}]\n"
        "sys.modules['solver'] = pkg\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", bootstrap + code],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    assert out.stdout.split() == []
