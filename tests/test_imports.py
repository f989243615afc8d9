"""The package's import graph, read from the source: no cycles (imports inside functions count),
no private names imported across modules, and the engine never imports a front end."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "scalecrafter_video"
ENGINE = ("ops", "errors", "layers", "plan", "families", "presets", "sizing", "layouts", "reuse", "dispersed",
          "patch", "baselines")
FRONT_ENDS = ("pipelines", "describe", "plan_plot", "arguments", "cli", "sweep", "bench", "evaluation", "demo", "ui")


def _module(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]):
    """(imported module, name or None) for every import of the package in `path`."""
    name = _module(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from ((a.name, None) for a in node.names if a.name.startswith("scalecrafter_video"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            if base.startswith("scalecrafter_video"):
                for alias in node.names:
                    child = f"{base}.{alias.name}"
                    yield (child, None) if child in modules else (base, alias.name)


@pytest.fixture(scope="module")
def graph():
    files = {_module(p): p for p in PACKAGE.rglob("*.py")}
    return {m: list(_imports(p, set(files))) for m, p in files.items()}


def test_no_private_names_across_modules(graph):
    private = [(m, target, name) for m, imports in graph.items() for target, name in imports
               if name and name.startswith("_") and not name.startswith("__") and target != m]
    assert private == []


def test_no_import_cycles(graph):
    edges = {m: {t for t, _ in imports if t in graph and t != m} for m, imports in graph.items()}
    done, path = set(), []

    def visit(m):
        if m in path:
            raise AssertionError(f"import cycle: {' -> '.join(path[path.index(m):] + [m])}")
        if m in done:
            return
        path.append(m)
        for t in sorted(edges[m]):
            visit(t)
        path.pop()
        done.add(m)

    for m in sorted(edges):
        visit(m)


def test_the_engine_never_imports_a_front_end(graph):
    def top(module):
        return module.split(".")[1] if module.count(".") else ""

    wrong = [(m, t) for m, imports in graph.items() if top(m) in ENGINE for t, _ in imports if top(t) in FRONT_ENDS]
    assert wrong == []
