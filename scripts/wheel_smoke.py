"""Checks on an installed wheel, run by scripts/wheel_smoke.sh from a folder outside the checkout
after the `scv` commands: their outputs, then the engine as a user calls it.

Usage: python wheel_smoke.py CHECKOUT   (CHECKOUT: the source tree, which must not be imported)
"""

from __future__ import annotations

import json
import logging
import os
import stat
import sys
from pathlib import Path

import torch

CHECKS = []


def check(fn):
    CHECKS.append(fn)
    return fn


def tiny_unet():
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        norm_num_groups=8,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        block_out_channels=(16, 16, 32, 32),
        cross_attention_dim=16,
        attention_head_dim=4,
    ).eval()


def run(unet, size):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, size, size, generator=g)
    text = torch.randn(2, 5, 16, generator=g)
    with torch.no_grad():
        return unet(x, 981, encoder_hidden_states=text).sample


@check
def installed_package_outside_the_checkout(checkout: Path):
    import scalecrafter_video

    where = Path(scalecrafter_video.__file__).resolve()
    assert checkout not in where.parents, where
    assert "site-packages" in where.parts, where


@check
def cli_outputs(checkout: Path):
    presets = Path("presets.txt").read_text()
    assert "sd15-2048x2048" in presets and "zeroscope-1024x576" in presets, presets
    steps = json.loads(Path("plan.json").read_text())["steps"]
    assert len(steps) == 50 and steps[0]["main"]["mid_block.resnets.0.conv1"] == 4 and steps[0]["damped"]
    (png,) = [Path(line) for line in Path("image.txt").read_text().split()]
    assert png.suffix == ".png" and png.is_file() and png.with_suffix(".json").is_file()
    (mp4,) = [Path(line) for line in Path("video.txt").read_text().split()]
    assert mp4.suffix == ".mp4" and mp4.stat().st_size > 0
    for name in ("grid.png", "table.md", "results.json"):
        assert (Path("out/demo") / name).is_file(), name
    (png,) = [Path(line) for line in Path("shapes.txt").read_text().split()]
    assert png.name.startswith("circle-64x64-scalecrafter") and png.with_suffix(".json").is_file()
    (mp4,) = [Path(line) for line in Path("shapes-video.txt").read_text().split()]
    assert mp4.name.startswith("square-64x64-scalecrafter") and mp4.suffix == ".mp4" and mp4.stat().st_size > 0


@check
def presets_come_from_the_top_level_configs(checkout: Path):
    """The wheel's scalecrafter_video/configs/*.toml are the checkout's configs/*.toml (which
    scalecrafter_video/configs links to), byte for byte, and `scv presets` lists every one."""
    from importlib.resources import files

    installed = files("scalecrafter_video") / "configs"
    assert installed.is_dir(), installed
    ours = {p.name: p.read_bytes() for p in sorted((checkout / "configs").glob("*.toml"))}
    theirs = {p.name: p.read_bytes() for p in installed.iterdir() if p.name.endswith(".toml")}
    assert ours and sorted(theirs) == sorted(ours), (sorted(theirs), sorted(ours))
    assert all(theirs[name] == data for name, data in ours.items()), [n for n in ours if theirs[n] != ours[n]]
    link = checkout / "scalecrafter_video" / "configs"
    assert link.is_symlink() and link.resolve() == (checkout / "configs").resolve(), link
    presets = Path("presets.txt").read_text()
    missing = [name for name in ours if Path(name).stem.replace("_", "-") not in presets]
    assert not missing, missing


@check
def extras_missing_are_one_line_errors(checkout: Path):
    for command, extra in (("scv plan --plot needs matplotlib", "plot"), ("scv ui needs gradio", "ui")):
        text = Path(f"{extra}-error.txt").read_text()
        assert text == f"scv: error: {command}: pip install 'scalecrafter_video[{extra}]'\n", text
    assert not Path("plan.png").exists()


@check
def bare_unet_follows_the_sampled_size(checkout: Path):
    from scalecrafter_video import apply_scalecrafter, scalecrafter

    unet = tiny_unet()
    plain8, plain32 = run(unet, 8), run(unet, 32)
    with scalecrafter(unet, 32, 32, ndcfg=False):
        fixed32 = run(unet, 32)
    handle = apply_scalecrafter(unet, ndcfg=False)
    assert torch.equal(run(unet, 8), plain8), "base size must run as trained"
    assert torch.equal(run(unet, 32), fixed32) and handle.plan.name == "derived-32x32"
    assert not torch.equal(fixed32, plain32)
    handle.remove()
    assert torch.equal(run(unet, 32), plain32)


@check
def one_line_errors(checkout: Path):
    from scalecrafter_video import ScaleCrafterError, apply_scalecrafter, scalecrafter

    unet = tiny_unet()
    for attempt in ("mismatch", "scale 32"):
        try:
            if attempt == "mismatch":
                with scalecrafter(unet, 32, 32):
                    run(unet, 16)
            else:
                apply_scalecrafter(unet, 256, 256)
        except ScaleCrafterError as exc:
            assert "\n" not in str(exc), exc
            assert ("height=32" in str(exc)) if attempt == "mismatch" else ("sample units" in str(exc)), exc
        else:
            raise AssertionError(f"{attempt}: no error")


@check
def unknown_pipeline_warns_and_runs_without_ndcfg(checkout: Path):
    from diffusers import StableDiffusionPAGPipeline

    from scalecrafter_video import scalecrafter
    from scalecrafter_video.models.tiny import tiny_pipeline

    pipe = StableDiffusionPAGPipeline(**tiny_pipeline("tiny-sd").components, pag_applied_layers="mid")
    seen = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    logging.getLogger("scalecrafter_video").addHandler(handler)
    try:
        with scalecrafter(pipe, 256, 256) as handle:
            pipe(
                "x",
                height=256,
                width=256,
                num_inference_steps=2,
                num_images_per_prompt=2,
                pag_scale=3.0,
                output_type="latent",
            )
    finally:
        logging.getLogger("scalecrafter_video").removeHandler(handler)
    assert sum("noise-damped CFG is off" in m for m in seen) == 1, seen
    assert handle.ndcfg_layout is None and handle.unet_calls == 2 and handle.damped_passes == 0


@check
def video_mp4_follows_the_umask(checkout: Path):
    from scalecrafter_video.jobs.generate import run_job
    from scalecrafter_video.jobs.options import GenerateOptions

    old = os.umask(0o022)
    try:
        (mp4,) = run_job(
            GenerateOptions(
                prompts=["x"],
                height=64,
                width=64,
                model="tiny-video",
                steps=1,
                frames=2,
                out_dir=Path("out/umask"),
                video=True,
                progress=False,
            )
        )
    finally:
        os.umask(old)
    assert stat.S_IMODE(mp4.stat().st_mode) == 0o644, oct(mp4.stat().st_mode)


def main() -> int:
    checkout = Path(sys.argv[1]).resolve()
    torch.set_num_threads(1)
    failed = 0
    for fn in CHECKS:
        try:
            fn(checkout)
            print(f"ok      {fn.__name__}")
        except Exception as exc:  # report every check, then fail
            failed += 1
            print(f"FAILED  {fn.__name__}: {type(exc).__name__}: {exc}")
    print(f"wheel-smoke: {len(CHECKS) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
