"""The package's floors, read from its folders and its import graph (tests/import_graph.py): no
cycles between modules or between floors, no private names imported across modules, the pure ops
and the engine at the bottom importing nothing above them, and no module outside a floor."""

import pytest

from import_graph import PACKAGE, floor_edges, floor_of, floor_order, floors, graph


@pytest.fixture(scope="module")
def g():
    return graph()


def test_every_module_lives_on_a_floor(g):
    loose = [m for m in g if floor_of(m) is None and m not in ("scalecrafter_video", "scalecrafter_video.__main__")]
    assert loose == [], f"modules outside a floor folder: {loose}"
    assert {"ops", "engine", "models", "jobs", "outputs", "commands"} <= set(floors())


def test_no_private_names_across_modules(g):
    private = [
        (m, target, name)
        for m, imports in g.items()
        for target, name in imports
        if name and name.startswith("_") and not name.startswith("__") and target != m
    ]
    assert private == []


def test_no_import_cycles(g):
    edges = {m: {t for t, _ in imports if t in g and t != m} for m, imports in g.items()}
    done, path = set(), []

    def visit(m):
        if m in path:
            raise AssertionError(f"import cycle: {' -> '.join(path[path.index(m) :] + [m])}")
        if m in done:
            return
        path.append(m)
        for t in sorted(edges[m]):
            visit(t)
        path.pop()
        done.add(m)

    for m in sorted(edges):
        visit(m)


def test_floors_form_a_stack(g):
    """Floors import each other one way only, so they can be ordered bottom-up."""
    order = floor_order(g)
    assert set(order) == set(floors())


def test_ops_and_engine_import_nothing_above_them(g):
    edges = floor_edges(g)
    assert edges["ops"] == set(), "ops are pure: they import nothing of the package"
    assert edges["engine"] <= {"ops"}, f"the engine imports {edges['engine'] - {'ops'}}"
    order = floor_order(g)
    assert order[:2] == ["ops", "engine"]


def test_only_the_commands_import_the_demo_command(g):
    demo = [
        m
        for m, imports in g.items()
        for t, _ in imports
        if t.startswith("scalecrafter_video.commands.demo") and not m.startswith("scalecrafter_video.commands")
    ]
    assert demo == []
    inner = [
        m
        for m, imports in g.items()
        for t, _ in imports
        if t.startswith("scalecrafter_video.commands.demo")
        and not m.startswith(("scalecrafter_video.commands.demo", "scalecrafter_video.commands.cli"))
    ]
    assert inner == [], "only the CLI imports the demo command"


def test_the_package_root_is_only_the_public_api():
    names = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert names == ["__init__.py", "__main__.py"]
