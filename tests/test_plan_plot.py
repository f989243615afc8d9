"""The plan picture: the factors it draws are the plan's, step by step (main, damped, windows), and
`scv plan --plot` writes it with the command line's usual guarantees."""

import importlib.util
import json

import numpy as np
import pytest
from PIL import Image

from helpers import one_line_error
from scalecrafter_video.commands.describe import plan_rows
from scalecrafter_video.commands.plan_plot import (
    layer_order,
    plan_figure,
    plan_matrices,
)
from scalecrafter_video.engine.plan import Plan, Rule
from scalecrafter_video.engine.presets import family_layers

pytest.importorskip("matplotlib")


def test_rows_are_grouped_by_block_in_unet_order():
    order = layer_order(family_layers("sd15"))
    blocks = [
        layer.split(".")[0] + ("." + layer.split(".")[1] if not layer.startswith("mid") else "") for layer in order
    ]
    assert list(dict.fromkeys(blocks)) == [
        *(f"down_blocks.{i}" for i in range(4)),
        "mid_block",
        *(f"up_blocks.{i}" for i in range(4)),
    ]
    assert sorted(order) == sorted(family_layers("sd15"))


def test_matrices_hold_the_sd15_4x_preset_step_by_step():
    """sd15-2048x2048 on DDIM 50 (method.md): mid block 4 for steps 0-8, 3 for 9-17, 2 for 18-34, then
    plain; DB1 2 until step 34; the damped plan leaves DB1 plain and runs only in the NDCFG window."""
    plan, rows = plan_rows("sd15", 2048, 2048, 50)
    order, main, damped = plan_matrices(plan, rows, family_layers("sd15"))
    mid = order.index("mid_block.resnets.0.conv1")
    db1 = order.index("down_blocks.1.resnets.0.conv1")
    db0 = order.index("down_blocks.0.resnets.0.conv1")
    assert main[mid, :9].tolist() == [4] * 9 and main[mid, 9:18].tolist() == [3] * 9
    assert main[mid, 18:35].tolist() == [2] * 17 and main[mid, 35:].tolist() == [1] * 15
    assert main[db1, :35].tolist() == [2] * 35 and main[db0].tolist() == [1] * 50
    assert damped[mid, 0] == 4 and damped[db1, :35].tolist() == [1] * 35
    assert np.isnan(damped[:, 35:]).all() and not np.isnan(damped[:, :35]).any()
    for j, row in enumerate(rows):  # every drawn factor is the one `scv plan --json` reports
        for layer, factor in row["main"].items():
            assert main[order.index(layer), j] == factor


def test_no_ndcfg_draws_no_damped_pass():
    plan, rows = plan_rows("sd15", 2048, 2048, 50, ndcfg=False)
    _, _, damped = plan_matrices(plan, rows, family_layers("sd15"), ndcfg=False)
    assert np.isnan(damped).all()


def test_anisotropic_factors_count_by_their_larger_side():
    layers = ["down_blocks.1.resnets.0.conv1", "mid_block.resnets.0.conv1"]
    plan = Plan("aniso", main=(Rule("mid_block", (2, 4), 50),))
    rows = plan.steps([981, 1], layers)
    _, main, _ = plan_matrices(plan, rows, layers)
    assert main.tolist() == [[1, 1], [4, 4]]


def test_figure_marks_the_windows():
    plan, rows = plan_rows("sd15", 2048, 2048, 50)
    fig = plan_figure(plan, rows, family_layers("sd15"), dispersion=True)
    labels = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert "NDCFG window ends (steps 0-34)" in labels
    assert "dispersion window (on; steps 0-34)" in labels
    main_ax, damped_ax = fig.axes[:2]
    assert [line.get_xdata()[0] for line in main_ax.get_lines() if line.get_linestyle() == "--"] == [34.5]
    assert len(damped_ax.patches) == len(main_ax.patches) > 0  # dispersion layers outlined in both panels


def test_plan_plot_writes_a_png(scv, tmp_path):
    target = tmp_path / "plots" / "sd15.png"
    code, out, err = scv("plan", "--family", "sd15", "--res", "2048x2048", "--steps", "50", "--json", "--plot", target)
    assert code == 0, err
    assert len(json.loads(out)["steps"]) == 50  # stdout stays pure JSON
    width, height = Image.open(target).size
    assert width > 1000 and height > 600
    assert [p.name for p in target.parent.iterdir()] == ["sd15.png"]  # no temporary file left


def test_plan_plot_never_replaces_a_file_without_overwrite(scv, tmp_path):
    target = tmp_path / "plan.png"
    target.write_bytes(b"mine")
    code, out, err = scv("plan", "--family", "sd15", "--res", "1024x1024", "--plot", target)
    one_line_error(code, err, "already exists", "--overwrite", "--plot")
    assert target.read_bytes() == b"mine" and out == ""
    code, out, err = scv("plan", "--family", "sd15", "--res", "1024x1024", "--plot", target, "--overwrite")
    assert code == 0, err
    assert Image.open(target).format == "PNG"


@pytest.mark.parametrize("name, needle", [("plan.jpg", "must name a .png file"), ("", "--plot is empty")])
def test_plan_plot_bad_file_names(scv, tmp_path, name, needle):
    code, out, err = scv(
        "plan", "--family", "sd15", "--res", "1024x1024", "--plot", str(tmp_path / name) if name else ""
    )
    one_line_error(code, err, needle)
    assert list(tmp_path.iterdir()) == []


def test_plan_plot_without_matplotlib_says_what_to_install(scv, tmp_path, monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else find_spec(name, *a)
    )
    code, out, err = scv("plan", "--family", "sd15", "--res", "1024x1024", "--plot", tmp_path / "p.png")
    one_line_error(code, err, "needs matplotlib", "pip install 'scalecrafter_video[plot]'")
    assert out == "" and list(tmp_path.iterdir()) == []
