"""MkDocs hooks (mkdocs.yml `hooks:`): the pages that are generated from the code at build time.

- docs/cli.md: `<!-- cli-reference -->` becomes the help of `scv` and of every subcommand, rendered
  from `scalecrafter_video.commands.cli.build_parser()` (no torch import; a few hundred ms).
- docs/architecture.md: `<!-- architecture -->` becomes the floors (top-level folders of the package)
  in import order, each floor's package docstring and each module with its docstring's first
  sentence, read from the source with tests/import_graph.py (no package import).
- Pictures under samples/ are added to the site as samples/..., so pages can show the committed
  demo outputs without a copy in docs/.
- Optional pages (docs/compatibility.md, written elsewhere) are in the nav only when the file exists.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import os
import sys
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parent.parent
CLI_MARKER = "<!-- cli-reference -->"
ARCHITECTURE_MARKER = "<!-- architecture -->"
OPTIONAL_PAGES = ("compatibility.md",)
HELP_COLUMNS = "100"


# ---- nav: optional pages --------------------------------------------------------------------
def _drop_missing(nav, docs_dir: Path):
    """The nav without entries that name a missing optional page."""
    kept = []
    for item in nav:
        if isinstance(item, dict):
            ((title, value),) = item.items()
            if isinstance(value, list):
                kept.append({title: _drop_missing(value, docs_dir)})
                continue
            if value in OPTIONAL_PAGES and not (docs_dir / value).is_file():
                continue
        elif isinstance(item, str) and item in OPTIONAL_PAGES and not (docs_dir / item).is_file():
            continue
        kept.append(item)
    return kept


def on_config(config, **kwargs):
    if config.get("nav"):
        config["nav"] = _drop_missing(config["nav"], Path(config["docs_dir"]))
    return config


# ---- samples/ pictures ----------------------------------------------------------------------
def on_files(files, config, **kwargs):
    for path in sorted((ROOT / "samples").rglob("*.png")):
        uri = path.relative_to(ROOT).as_posix()
        if files.get_file_from_path(uri) is None:
            files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files


# ---- the CLI reference ----------------------------------------------------------------------
def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def cli_reference() -> str:
    sys.path.insert(0, str(ROOT))
    old_columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = HELP_COLUMNS  # argparse wraps help text to the terminal's width
    try:
        from scalecrafter_video.commands.cli import build_parser

        parser = build_parser()
        parts = ["## `scv`", "", "```text", parser.format_help().rstrip(), "```", ""]
        for name, sub in _subparsers(parser).items():
            parts += [f"## `scv {name}`", "", "```text", sub.format_help().rstrip(), "```", ""]
    finally:
        sys.path.remove(str(ROOT))
        if old_columns is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old_columns
    return "\n".join(parts)


# ---- the architecture page ------------------------------------------------------------------
def _import_graph():
    spec = importlib.util.spec_from_file_location("_docs_import_graph", ROOT / "tests" / "import_graph.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _docstring(path: Path) -> str:
    return ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""


def _first_sentence(doc: str) -> str:
    """The docstring's first sentence: its first paragraph up to the first full stop outside
    parentheses (so "(He et al. 2024)" does not end it)."""
    paragraph = " ".join(doc.split("\n\n")[0].split())
    depth = 0
    for i, char in enumerate(paragraph):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "." and depth <= 0 and (i + 1 == len(paragraph) or paragraph[i + 1] == " "):
            return paragraph[: i + 1]
    return paragraph


def architecture() -> str:
    graph = _import_graph()
    modules = graph.modules()
    edges = graph.floor_edges()
    order = graph.floor_order()
    parts = [
        "Floors from the bottom up: " + " → ".join(f"`{f}`" for f in order) + ".",
        "",
    ]
    for number, floor in enumerate(order, 1):
        package = f"scalecrafter_video.{floor}"
        below = sorted(edges.get(floor, ()), key=order.index)
        parts += [f"## {number}. `{floor}/`", ""]
        doc = _docstring(modules[package]) if package in modules else ""
        if doc:
            parts += [doc, ""]
        parts += [
            "Imports from: " + (", ".join(f"`{b}`" for b in below) if below else "nothing in the package") + ".",
            "",
        ]
        parts += ["| module | what it holds |", "|---|---|"]
        for name, path in modules.items():
            if graph.floor_of(name) != floor or name == package:
                continue
            summary = _first_sentence(_docstring(path)).replace("|", "\\|") or "(no docstring)"
            parts.append(f"| `{name.removeprefix('scalecrafter_video.')}` | {summary} |")
        parts.append("")
    top = [name for name in modules if graph.floor_of(name) is None]
    parts += ["## The package itself", "", "| module | what it holds |", "|---|---|"]
    for name in top:
        summary = _first_sentence(_docstring(modules[name])).replace("|", "\\|") or "(no docstring)"
        parts.append(f"| `{name}` | {summary} |")
    return "\n".join(parts) + "\n"


def on_page_markdown(markdown, page, config, files, **kwargs):
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, cli_reference())
    if ARCHITECTURE_MARKER in markdown:
        markdown = markdown.replace(ARCHITECTURE_MARKER, architecture())
    return markdown
