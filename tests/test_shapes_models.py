"""The shipped shapes models as built-in models of `scv generate`: class names as prompts, the null
class inside, pixel space without a VAE, the method's effect at 2x, and one-line errors for what
such a model cannot take."""

import json

import numpy as np
import pytest
from PIL import Image

from scalecrafter_video.models.shapes import builtin as shapes


def _outputs(folder):
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".")) if folder.exists() else []


def test_generate_a_class_at_2x_writes_png_and_sidecar(scv, tmp_path):
    out = tmp_path / "out"
    for method in ("direct", "scalecrafter"):
        code, _, err = scv(
            "generate",
            "--model",
            "shapes32",
            "--prompt",
            "circle",
            "--res",
            "64x64",
            "--steps",
            4,
            "--method",
            method,
            "--out",
            out,
            "--no-progress",
        )
        assert code == 0, err
    pngs = [p for p in _outputs(out) if p.suffix == ".png"]
    assert [p.name.split("-")[:3] for p in pngs] == [
        ["circle", "64x64", "direct"],
        ["circle", "64x64", "scalecrafter"],
    ]
    direct, patched = (np.asarray(Image.open(p)) for p in pngs)
    assert direct.shape == patched.shape == (64, 64, 3) and not np.array_equal(direct, patched)
    side = json.loads(pngs[1].with_suffix(".json").read_text())
    assert side["model"] == "shapes32" and side["family"] == "shapes32" and side["base_size"] == [32, 32]
    assert side["pipeline"] == "ShapesPipeline" and side["plan"]["name"] == "derived-64x64"
    assert side["prompt"] == "circle" and side["guidance"] == 3.0  # the family's guidance


def test_the_same_job_through_the_api_is_the_same_image(scv, tmp_path):
    from scalecrafter_video.jobs.generate import run_job
    from scalecrafter_video.jobs.options import GenerateOptions

    code, _, err = scv(
        "generate",
        "--model",
        "shapes32",
        "--prompt",
        "square",
        "--res",
        "64x32",
        "--steps",
        3,
        "--out",
        tmp_path / "cli",
        "--no-progress",
    )
    assert code == 0, err
    opts = GenerateOptions(
        model="shapes32", prompts=["square"], width=64, height=32, steps=3, out_dir=tmp_path / "api", progress=False
    )
    (api,) = run_job(opts)
    (cli,) = [p for p in _outputs(tmp_path / "cli") if p.suffix == ".png"]
    assert np.array_equal(np.asarray(Image.open(api)), np.asarray(Image.open(cli)))
    assert Image.open(api).size == (64, 32)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--prompt", "dog"], "shapes32 draws one of circle, square, triangle: 'dog' is not one of its classes"),
        ([], "no prompt: shapes32 draws one of circle, square, triangle (e.g. --prompt circle)"),
        (["--prompt", "circle", "--negative-prompt", "square"], "takes no --negative-prompt"),
        (["--prompt", "circle", "--freeu"], "--freeu has no tuned parameters for shapes32 models"),
    ],
)
def test_what_a_class_model_cannot_take_is_one_line(scv, tmp_path, args, message):
    code, _, err = scv(
        "generate", "--model", "shapes32", "--res", "64x64", "--steps", 2, "--out", tmp_path / "o", *args
    )
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_missing_shipped_weights_fail_before_any_work(scv, tmp_path, monkeypatch):
    monkeypatch.setattr(shapes, "ASSET_DIR", tmp_path / "assets")
    for model, video in (("shapes32", []), ("shapes32-motion", ["--video"])):
        code, _, err = scv(
            "generate", "--model", model, *video, "--prompt", "circle", "--res", "64x64", "--out", tmp_path / "o"
        )
        assert code == 2 and "this install has no shapes32" in err and "reinstall scalecrafter_video" in err
        assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_the_shipped_motion_model_generates_an_mp4(scv, tmp_path):
    from scalecrafter_video.outputs.media import read_video

    code, stdout, err = scv(
        "generate",
        "--video",
        "--model",
        "shapes32-motion",
        "--prompt",
        "triangle",
        "--res",
        "64x64",
        "--frames",
        4,
        "--steps",
        2,
        "--out",
        tmp_path / "o",
        "--no-progress",
    )
    assert code == 0, err
    (mp4,) = [p for p in _outputs(tmp_path / "o") if p.suffix == ".mp4"]
    assert read_video(mp4).shape == (4, 64, 64, 3)
    side = json.loads(mp4.with_suffix(".json").read_text())
    assert side["model"] == "shapes32-motion" and side["unet_class"] == "UNetMotionModel" and side["frames"] == 4
    code, _, err = scv(
        "generate",
        "--video",
        "--model",
        "shapes32-motion",
        "--prompt",
        "circle",
        "--res",
        "64x64",
        "--frames",
        40,
        "--out",
        tmp_path / "o2",
    )
    assert code == 2 and "40" in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "o2").exists()
