"""The shipped demo checkpoint loads, is small, and the reduced benchmark shows the effect:
at 2x and 4x per side direct sampling repeats objects, ScaleCrafter's derived plan draws one."""

import json
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from scalecrafter_video.models.shapes.model import (  # noqa: E402
    ASSET_DIR,
    CONFIG_NAME,
    WEIGHTS_NAME,
    load_demo_model,
)


@pytest.fixture(scope="module")
def model():
    return load_demo_model()


def test_checkpoint_is_small_and_loads(model):
    assert (ASSET_DIR / WEIGHTS_NAME).stat().st_size <= 10 * 1024 * 1024
    cfg = json.loads((ASSET_DIR / CONFIG_NAME).read_text())
    assert cfg["unet"]["sample_size"] == 32 and cfg["unet"]["in_channels"] == 3
    assert cfg["class_names"] == model.class_names and cfg["null_class"] == len(cfg["class_names"])
    n = sum(p.numel() for p in model.unet.parameters())
    assert 0.5e6 < n < 5e6
    # standard diffusers layer names, so the engine's generic plan rules apply
    names = {k for k, _ in model.unet.named_modules()}
    for k in (
        "down_blocks.1.resnets.0.conv1",
        "down_blocks.1.downsamplers.0.conv",
        "mid_block.resnets.0.conv2",
        "up_blocks.0.upsamplers.0.conv",
        "up_blocks.2.resnets.1.conv2",
    ):
        assert k in names


def test_derived_plan_for_the_demo_model(model):
    from scalecrafter_video import remove_scalecrafter, scalecrafter

    with scalecrafter(model.unet, height=64, width=64, preset="auto", ndcfg=True) as h2:
        plan2 = h2.plan.to_dict()
        assert h2.patched_convs > 0
    with scalecrafter(model.unet, height=128, width=128, preset="auto", ndcfg=True, batch_layout="uncond,cond") as h4:
        assert h4.plan.damped  # the 4x plan has an NDCFG window
    assert remove_scalecrafter(model.unet) is False
    assert "up_blocks.2" not in json.dumps(plan2)  # the outermost up block is never dilated


@pytest.mark.slow
def test_reduced_demo_shows_the_effect_at_2x(model):
    from scalecrafter_video.commands.demo.run import Case, benchmark

    cases = [Case("direct", 2), Case("scalecrafter", 2, ndcfg=True)]
    rows, images = benchmark(model, samples=8, steps=10, seed=0, batch=8, cases=cases, progress_bar=False)
    direct, sc = rows
    assert images["direct 2x"].shape == (8, 64, 64, 3)
    assert sc["single"] >= direct["single"] + 0.25, rows
    assert direct["repetition"] >= sc["repetition"] + 0.25, rows


@pytest.mark.slow
def test_reduced_demo_shows_the_effect_at_4x(model):
    from scalecrafter_video.commands.demo.run import Case, benchmark

    cases = [
        Case("direct", 4),
        Case("scalecrafter-redilate", 4),
        Case("scalecrafter-redilate-nodecay", 4, progressive=False),
    ]
    rows, images = benchmark(model, samples=4, steps=10, seed=0, batch=4, cases=cases, progress_bar=False)
    direct, decay, held = rows
    assert images["direct 4x"].shape == (4, 128, 128, 3)
    assert direct["repetition"] >= 0.75 and direct["mean_objects"] >= 3, rows
    for sc in (decay, held):  # the derived plan removes the repetition, with or without the decay
        assert sc["repetition"] <= direct["repetition"] - 0.5 and sc["mean_objects"] <= 1.5, rows
    assert held["single"] >= direct["single"] + 0.5, rows


@pytest.mark.slow
def test_reduced_demo_cascade_keeps_one_object_at_4x(model):
    """The demo's cascade row: each base sample refined to 4x keeps one object (direct repeats it)."""
    from scalecrafter_video.commands.demo.run import Case, benchmark, cascade_work

    cases = [Case("direct", 1), Case("direct", 4), Case("cascade", 4)]
    rows, images = benchmark(model, samples=4, steps=10, seed=0, batch=4, cases=cases, progress_bar=False)
    base, direct, cascade = rows
    assert images["cascade 4x"].shape == (4, 128, 128, 3)
    assert cascade["single"] == 1.0 and cascade["repetition"] == 0, rows
    assert direct["repetition"] >= 0.75, rows
    assert (
        cascade["cascade"] == {"restart": [0.5, 0.8], "skip_exponent": 2.0, "stage_plan": "full", "color_fix": "adain"}
        and cascade["unet_calls"] > 0
    ), rows
    # the progress bar counts the steps the stages really run (2x from step 5, 4x from step 8 of
    # 10), each weighted by its pixel count over the base's
    first, second = 10 - 5, 10 - 8
    assert cascade["unet_calls"] == 4 * (first + second) and cascade_work(10, 4) == 4 * first + 16 * second


def test_the_cascade_case_needs_the_base_samples(model):
    from scalecrafter_video.commands.demo.run import Case, run_case

    with pytest.raises(ValueError, match="base case first"):
        run_case(model, Case("cascade", 2), torch.tensor([0]), steps=2, guidance=3.0, eta=1.0, seed=0, batch=1)


def test_demo_declares_its_cfg_layout_so_ndcfg_runs(model):
    """The demo samples its bare UNet with [uncond; cond] batches and says so: the damped pass runs."""
    from scalecrafter_video.commands.demo.run import Case, run_case

    kw = dict(steps=2, guidance=3.0, eta=1.0, seed=0, batch=1)
    _, with_ndcfg = run_case(model, Case("scalecrafter", 4, ndcfg=True), torch.tensor([0]), **kw)
    _, without = run_case(model, Case("scalecrafter-redilate", 4), torch.tensor([0]), **kw)
    assert with_ndcfg["damped_passes"] >= 1 and without["damped_passes"] == 0
