"""The package's import graph read from its source (imports inside functions count): which module
imports which, and the floors it makes, a floor being a top-level folder of the package.

Shared by tests/test_imports.py and the docs site's architecture page (docs/hooks.py)."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "scalecrafter_video"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path, known: set[str]):
    """(imported module, imported name or None) for every import of the package in `path`."""
    name = module_name(path)
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
                    yield (child, None) if child in known else (base, alias.name)


def graph() -> dict[str, list[tuple[str, str | None]]]:
    files = modules()
    return {m: list(imports_of(p, set(files))) for m, p in files.items()}


def floor_of(module: str) -> str | None:
    """The floor (top-level folder) a module lives on; None for the package's own `__init__`/`__main__`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and (PACKAGE / parts[1]).is_dir() else None


def floors() -> list[str]:
    """Every floor, as the folders on disk say."""
    return sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file())


def floor_edges(g=None) -> dict[str, set[str]]:
    """floor -> the other floors its modules import."""
    g = graph() if g is None else g
    edges: dict[str, set[str]] = {f: set() for f in floors()}
    for m, imports in g.items():
        here = floor_of(m)
        if here is None:
            continue
        edges[here] |= {floor_of(t) for t, _ in imports if floor_of(t) not in (None, here)}
    return edges


def floor_order(g=None) -> list[str]:
    """The floors from the bottom up: each imports only floors before it. Raises CycleError when two
    floors import each other (then there are no floors)."""
    return list(TopologicalSorter(floor_edges(g)).static_order())


__all__ = ["CycleError", "floor_edges", "floor_of", "floor_order", "floors", "graph", "modules"]
