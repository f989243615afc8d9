"""`scv eval` end to end on image folders with sidecars, offline (random features, shapes references)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from scalecrafter_video.models.shapes.data import render_at


def _write_set(folder, images, method, size, base=False):
    folder.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(images):
        path = folder / f"{method}-{size}-{i:03d}.png"
        Image.fromarray(im).save(path)
        path.with_suffix(".json").write_text(
            json.dumps(
                {
                    "method": method,
                    "width": size,
                    "height": size,
                    "model": "shapes-test",
                    "base": base,
                    "base_size": [32, 32],
                }
            )
        )


def _shapes(n, size, seed):
    x = render_at(n, size, size, torch.Generator().manual_seed(seed))
    return list(np.rint(x.permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8))


@pytest.fixture(scope="module")
def shapes_outputs(tmp_path_factory):
    """Base-size shapes; at 64 px "direct" repeats base-size objects 2x2, "scalecrafter" draws true 64 px shapes."""
    root = tmp_path_factory.mktemp("shapes-out")
    n = 40
    _write_set(root / "base", _shapes(n, 32, 1), "direct", 32, base=True)
    _write_set(root / "direct", [np.tile(im, (2, 2, 1)) for im in _shapes(n, 32, 2)], "direct", 64)
    _write_set(root / "scalecrafter", _shapes(n, 64, 3), "scalecrafter", 64)
    return root


def test_eval_reference_shapes_table_json_plot(scv, shapes_outputs, tmp_path):
    out_json, out_png = tmp_path / "eval.json", tmp_path / "eval.png"
    code, out, err = scv(
        "eval",
        "--generated",
        shapes_outputs,
        "--reference-shapes",
        "--features",
        "random",
        "--num-reference",
        64,
        "--crops",
        1,
        "--json",
        out_json,
        "--plot",
        out_png,
        "--no-progress",
    )
    assert code == 0, err
    rows = json.loads(out_json.read_text())["rows"]
    assert [(r["method"], r["res"], r["n"], r["base"]) for r in rows] == [
        ("direct", "32x32", 40, True),
        ("direct", "64x64", 40, False),
        ("scalecrafter", "64x64", 40, False),
    ]
    base, direct, crafted = rows
    # true 64 px shapes are closer to the 64 px data than repeated 32 px ones, in full view and in crops
    assert crafted["fid_r"] < direct["fid_r"] and crafted["kid_r"] < direct["kid_r"]
    assert crafted["fid_c"] < direct["fid_c"]
    assert base["fid_b"] is None and direct["fid_b"] is not None and crafted["fid_b"] is not None
    assert crafted["single"] == 1.0 and direct["repetition"] == 1.0 and base["single"] == 1.0
    assert base["clean"] == pytest.approx(1.0)
    for column in ("FID_r", "KID_r", "FID_b", "FID_c", "single object"):
        assert column in out
    assert "NOT comparable" in out
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert Image.open(out_png).size[0] > 400


def test_eval_identical_reference_gives_fid_zero(scv, shapes_outputs, tmp_path):
    out_json = tmp_path / "e.json"
    code, _, err = scv(
        "eval",
        "--generated",
        shapes_outputs / "scalecrafter",
        "--reference",
        shapes_outputs / "scalecrafter",
        "--features",
        "random",
        "--json",
        out_json,
        "--no-progress",
    )
    assert code == 0, err
    (row,) = json.loads(out_json.read_text())["rows"]
    assert abs(row["fid_r"]) < 1e-4 and row["fid_b"] is None  # distinct sets score above 0.5 here


def test_eval_refuses_to_overwrite_and_bad_input_is_one_line(scv, shapes_outputs, tmp_path):
    existing = tmp_path / "old.json"
    existing.write_text("keep me")
    code, _, err = scv("eval", "--generated", shapes_outputs, "--features", "random", "--json", existing)
    assert code == 2 and "already exists" in err and existing.read_text() == "keep me"
    for args, message in (
        (["--generated", tmp_path / "nope"], "is not a folder"),
        (["--generated", shapes_outputs, "--crops", 2, "--features", "random"], "--reference"),
        (["--generated", shapes_outputs, "--plot", tmp_path / "p.jpg"], ".png"),
        (["--generated", tmp_path, "--features", "random"], "holds no images"),
    ):
        code, _, err = scv("eval", *args)
        assert code == 2 and message in err and err.count("\n") == 1, err
