"""Cascade sampling (`scv generate --cascade`, `jobs.cascade.cascade`): stages of at most 2x per side
from the base size, each re-noised to the restart step and denoised with FreeScale's skip residual,
on every supported family (tiny SD 1.5, SDXL, AnimateDiff, ModelScope pipelines and the shipped
shapes models); the settings refused with one-line errors before any weights load."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scalecrafter_video import ScaleCrafterError
from scalecrafter_video.jobs.cascade import (
    RESTRAINED_LAYERS,
    CascadeConfig,
    cascade,
    cascade_sizes,
    refine,
    restrained_plan,
    skip_weight,
    stage_sizes,
)
from scalecrafter_video.jobs.options import GenerateOptions
from scalecrafter_video.models import tiny

GEN = ("generate", "--no-progress", "--cascade", "--steps", "4", "--restart", "0.5")


# ---- sizes, settings, plans --------------------------------------------------------------------
def test_stages_at_most_2x_per_side_from_the_base():
    assert cascade_sizes((64, 64), (128, 128), 64) == [(64, 64), (128, 128)]
    assert cascade_sizes((64, 64), (256, 256), 64) == [(64, 64), (128, 128), (256, 256)]
    assert cascade_sizes((512, 512), (1536, 1536), 64) == [(512, 512), (1024, 1024), (1536, 1536)]
    # any aspect ratio: the base stage keeps the target's, within the base size
    assert cascade_sizes((512, 512), (1024, 2048), 64) == [(256, 512), (512, 1024), (1024, 2048)]
    assert cascade_sizes((1024, 1024), (2048, 4096), 32) == [(512, 1024), (1024, 2048), (2048, 4096)]
    for sizes in (cascade_sizes((32, 32), (96, 160), 4), stage_sizes((40, 56), (200, 120), 8)):
        for (h0, w0), (h1, w1) in zip(sizes, sizes[1:]):
            assert h1 <= 2 * h0 + 8 and w1 <= 2 * w0 + 8
        assert all(h % 4 == 0 and w % 4 == 0 for h, w in sizes)
    with pytest.raises(ScaleCrafterError, match="a cascade needs a size above the base size 64x64"):
        cascade_sizes((64, 64), (64, 64), 64)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"restart": 0}, "restart must be above 0 and below 1"),
        ({"restart": 1.0}, "restart must be above 0 and below 1"),
        ({"restart": float("nan")}, "restart must be above 0 and below 1"),
        ({"skip_exponent": 0}, "skip exponent must be above 0"),
        ({"skip_exponent": -2}, "skip exponent must be above 0"),
        ({"stage_plan": "half"}, "unknown stage plan 'half': choose one of full, restrained, none"),
        ({"motion_exponent": 0}, "motion exponent must be above 0"),
        ({"color_fix": "haar"}, "unknown colour fix 'haar': choose one of adain, wavelet, none"),
        ({"motion_exponent": float("inf")}, "motion exponent must be above 0"),
        ({"restart": (0.5, 1.0)}, "restart must be above 0 and below 1"),
        ({"restart": ()}, "restart is an empty sequence"),
    ],
)
def test_bad_settings_are_one_line_errors(kwargs, message):
    with pytest.raises(ScaleCrafterError, match=message) as info:
        CascadeConfig(**kwargs)
    assert "\n" not in str(info.value)


def test_restart_is_freescales_step_and_diffusers_strength_reaches_it():
    for steps in range(1, 101):
        for restart in (0.05, 0.3, 0.5, 0.7, 0.95):
            config = CascadeConfig(restart=restart)
            assert config.start_step(steps) == int(restart * steps)
            assert steps - min(int(steps * config.strength(steps)), steps) == config.start_step(steps)
    # FreeScale's weights: about 0.59 at its restart (t = 681), 0.10 at step 30 of 50 (t = 381)
    assert skip_weight(681, 2) == pytest.approx(0.59, abs=0.01)
    assert skip_weight(381, 2) == pytest.approx(0.10, abs=0.01)
    assert skip_weight(1000, 3) == 1 and skip_weight(0, 2) == 0


def test_a_restart_per_stage_the_last_serving_the_stages_beyond():
    config = CascadeConfig(restart=[0.5, 0.8])
    assert config.restart == (0.5, 0.8) and config.restarts == (0.5, 0.8)
    assert [config.restart_at(k) for k in (1, 2, 3)] == [0.5, 0.8, 0.8]
    assert [config.start_step(25, k) for k in (1, 2, 3)] == [12, 20, 20]
    assert config.to_dict()["restart"] == [0.5, 0.8]
    assert CascadeConfig(restart=[0.3]).restart == 0.3 and CascadeConfig(restart=0.3).restarts == (0.3,)
    assert CascadeConfig(restart=0.3).start_step(25, 2) == CascadeConfig(restart=0.3).start_step(25) == 7


def test_restrained_plan_is_freescales_subset():
    plan = restrained_plan((512, 512), (1024, 2048))
    assert [r.selector for r in plan.main] == list(RESTRAINED_LAYERS)
    assert all(r.factor == (2.0, 4.0) and r.stop == 35 and not r.progressive for r in plan.main)
    assert not plan.damped and plan.ndcfg_stop == 0
    assert not restrained_plan((512, 512), (512, 512)).main


def test_cascade_settings_name_only_cascade_jobs():
    plain = GenerateOptions(prompts=["x"], height=128, width=128)
    assert "cascade" not in plain.output_settings()
    assert (
        plain.output_settings()
        == GenerateOptions(prompts=["x"], height=128, width=128, restart=0.7, stage_plan="none").output_settings()
    )
    on = GenerateOptions(prompts=["x"], height=128, width=128, cascade=True)
    assert on.output_settings()["cascade"] == {
        "restart": (0.5, 0.8),
        "skip_exponent": 2.0,
        "stage_plan": "full",
        "color_fix": "adain",
    }
    assert on.method_name == "cascade" and plain.method_name == "scalecrafter"


# ---- the skip residual is FreeScale's, step for step -----------------------------------------------
@pytest.fixture(scope="module")
def shapes32():
    from scalecrafter_video.models.shapes.builtin import SHAPES_MODELS

    pipe = SHAPES_MODELS["shapes32"].build()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _freescale_by_hand(pipe, x0, steps, restart, exponent, seed, guidance=3.0, eta=1.0):
    """FreeScale's stage loop written out: noise once, restart at step int(restart * steps), before
    every step x = x (1 - c1) + add_noise(x0, noise, t) c1."""
    from diffusers import DDIMScheduler

    sched = DDIMScheduler.from_config(pipe.scheduler.config)
    sched.set_timesteps(steps)
    timesteps = sched.timesteps[int(restart * steps) :]
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(x0.shape, generator=generator)
    x = sched.add_noise(x0, noise, timesteps[:1])
    labels = pipe.class_ids(["circle"])
    context = torch.cat(
        [pipe.class_embedding(torch.full_like(labels, pipe.class_embedding.null_id)), pipe.class_embedding(labels)]
    )
    with torch.no_grad():
        for t in timesteps:
            c1 = skip_weight(int(t), exponent)
            x = x * (1 - c1) + sched.add_noise(x0, noise, t.reshape(1)) * c1
            eps = pipe.unet(torch.cat([x, x]), torch.full((2,), int(t)), encoder_hidden_states=context).sample
            u, c = eps.chunk(2)
            x = sched.step(u + guidance * (c - u), t, x, eta=eta, generator=generator).prev_sample
    return (x.clamp(-1, 1) + 1) / 2


def test_a_stage_is_freescales_loop(shapes32):
    frames = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    config = CascadeConfig(restart=0.3, skip_exponent=2.0, stage_plan="none", color_fix="none")

    def direct(refiner, size, final):
        import contextlib

        return contextlib.nullcontext({"plan": None})

    out, record = refine(
        shapes32,
        "circle",
        frames,
        config=config,
        steps=10,
        guidance_scale=3.0,
        method=direct,
        final=True,
        eta=1.0,
        generator=torch.Generator().manual_seed(5),
    )
    expected = _freescale_by_hand(shapes32, frames * 2 - 1, 10, 0.3, 2.0, seed=5)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    assert (record["start_step"], record["steps"], record["unet_calls"], record["start_timestep"]) == (3, 7, 7, 601)


def _mixed(motion_exponent, latents, original, noise, exponent=2.0):
    from types import SimpleNamespace

    from diffusers import DDIMScheduler

    from scalecrafter_video.jobs.cascade import SkipResidual

    scheduler = DDIMScheduler(num_train_timesteps=1000)
    scheduler.set_timesteps(10)
    skip = SkipResidual(SimpleNamespace(scheduler=scheduler), exponent, 3, 10, motion_exponent)
    skip.capture.original, skip.capture.noise = original, noise
    t, t_next = scheduler.timesteps[3], scheduler.timesteps[4:5]
    noised = skip.noiser.add_noise(original, noise, t_next)
    return skip.mix(scheduler, 0, t, latents), noised, float(t_next[0])


def test_motion_exponent_mixes_the_frames_mean_and_their_differences_apart():
    g = torch.Generator().manual_seed(0)
    latents, original, noise = (torch.randn(2, 3, 5, 4, 4, generator=g, dtype=torch.float64) for _ in range(3))
    plain, noised, t = _mixed(None, latents, original, noise)
    c1, c2 = skip_weight(t, 2.0), skip_weight(t, 0.5)
    assert torch.equal(plain, latents * (1 - c1) + noised * c1)  # FreeScale's residual, bit for bit
    assert torch.equal(_mixed(2.0, latents, original, noise)[0], plain)  # the same exponent changes nothing
    held, _, _ = _mixed(0.5, latents, original, noise)

    def mean(x):
        return x.mean(dim=2, keepdim=True)

    torch.testing.assert_close(mean(held), mean(latents) * (1 - c1) + mean(noised) * c1)  # appearance: c1
    torch.testing.assert_close(
        held - mean(held), (latents - mean(latents)) * (1 - c2) + (noised - mean(noised)) * c2
    )  # motion: c2 > c1, more of the stage input's frame-to-frame differences
    images = latents[:, :, 0]  # images (no frame axis): one weight whatever the motion exponent
    assert torch.equal(
        _mixed(0.5, images, original[:, :, 0], noise[:, :, 0])[0],
        _mixed(None, images, original[:, :, 0], noise[:, :, 0])[0],
    )


def test_color_fix_gives_each_frame_its_inputs_colour_statistics():
    from scalecrafter_video.jobs.frames import match_colors

    g = torch.Generator().manual_seed(0)
    reference = torch.rand(3, 3, 16, 16, generator=g) * 0.5 + 0.25
    shifted = (reference * 1.3 - 0.1).clamp(0, 1)  # more saturated, darker
    fixed = match_colors(shifted, reference)
    torch.testing.assert_close(fixed.mean(dim=(2, 3)), reference.mean(dim=(2, 3)), atol=1e-5, rtol=0)
    torch.testing.assert_close(fixed.std(dim=(2, 3)), reference.std(dim=(2, 3)), atol=1e-5, rtol=0)
    torch.testing.assert_close(fixed, reference, atol=1e-5, rtol=0)  # a per-channel affine change is undone
    flat = torch.full((1, 3, 4, 4), 0.3)
    torch.testing.assert_close(match_colors(flat, flat), flat)  # no spread: nothing divided by zero
    with pytest.raises(ValueError, match="differ"):
        match_colors(shifted, reference[:1])


def test_wavelet_fix_takes_the_coarse_band_from_the_input_and_the_detail_from_the_frames():
    from scalecrafter_video.jobs.frames import low_band, match_low_band

    g = torch.Generator().manual_seed(0)
    reference = low_band(torch.rand(2, 3, 64, 64, generator=g, dtype=torch.float64)) * 0.6 + 0.2
    shifted = reference + torch.tensor([0.1, -0.05, 0.08], dtype=torch.float64).view(1, 3, 1, 1)  # colours only
    torch.testing.assert_close(match_low_band(shifted, reference), reference)  # taken back to the input's
    checker = ((torch.arange(64).view(64, 1) + torch.arange(64)) % 2 * 2 - 1).to(torch.float64) * 0.05
    detailed = reference + checker  # detail only: the finest band, which the binomial blur removes
    inner = (..., slice(16, -16), slice(16, -16))  # the blurs reach 15 pixels: the padded edges differ
    torch.testing.assert_close(match_low_band(detailed, reference)[inner], detailed[inner])
    with pytest.raises(ValueError, match="differ"):
        match_low_band(detailed, reference[:1])


def test_every_colour_fix_the_options_offer_has_a_fixer():
    from scalecrafter_video.jobs.frames import COLOR_FIXERS, fix_colors, match_colors
    from scalecrafter_video.jobs.options import COLOR_FIXES

    assert tuple(COLOR_FIXERS) == COLOR_FIXES
    g = torch.Generator().manual_seed(0)
    frames, reference = torch.rand(2, 3, 8, 8, generator=g), torch.rand(2, 3, 8, 8, generator=g)
    assert fix_colors(frames, reference, "none") is frames
    assert torch.equal(fix_colors(frames, reference, "adain"), match_colors(frames, reference))
    with pytest.raises(ValueError, match="unknown colour fix 'hsv'"):
        fix_colors(frames, reference, "hsv")


def test_a_stage_matches_its_inputs_colours_unless_told_not_to(shapes32):
    frames = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))

    def direct(refiner, size, final):
        import contextlib

        return contextlib.nullcontext({"plan": None})

    kw = dict(steps=4, guidance_scale=3.0, method=direct, final=True, eta=1.0)
    raw, record = refine(
        shapes32,
        "circle",
        frames,
        config=CascadeConfig(color_fix="none"),
        generator=torch.Generator().manual_seed(5),
        **kw,
    )
    fixed, fixed_record = refine(
        shapes32, "circle", frames, config=CascadeConfig(), generator=torch.Generator().manual_seed(5), **kw
    )
    assert (record["color_fix"], fixed_record["color_fix"]) == ("none", "adain")
    from scalecrafter_video.jobs.frames import match_colors

    torch.testing.assert_close(fixed, match_colors(raw, frames))


# ---- every family, through scv generate --cascade --------------------------------------------------
def _sidecar(path: Path) -> dict:
    return json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    "model, res, stages, video",
    [
        ("tiny-sd", "128x128", 2, False),
        ("tiny-sd", "256x128", 3, False),
        ("tiny-sdxl", "128x128", 2, False),
        ("tiny-video", "128x128", 2, True),
        ("tiny-video3d", "256x256", 3, True),
        ("shapes32", "128x128", 3, False),
        ("shapes32-motion", "64x64", 2, True),
    ],
)
def test_cascade_on_every_family(scv, tmp_path, model, res, stages, video):
    prompt = ("--prompt", "circle") if model.startswith("shapes") else ()
    clip = ("--video", "--frames", "4") if video else ()
    code, out, err = scv(*GEN, "--model", model, "--res", res, *prompt, *clip, "--out", tmp_path)
    assert code == 0, err
    (path,) = [Path(p) for p in out.split()]
    width, height = (int(v) for v in res.split("x"))
    assert path.name.startswith(f"{'circle' if prompt else 'smoke-test'}-{res}-cascade-")
    meta = _sidecar(path)
    assert meta["method"] == "cascade" and meta["output_settings"]["cascade"]["restart"] == 0.5
    records = meta["cascade"]["stages"]
    assert len(records) == stages and records[-1]["size"] == [width, height]
    assert records[0]["plan"] is None and records[0]["steps"] == records[0]["unet_calls"] == 4
    for before, after in zip(records, records[1:]):
        assert after["size"][0] <= 2 * before["size"][0] and after["size"][1] <= 2 * before["size"][1]
        assert (after["start_step"], after["steps"], after["unet_calls"]) == (2, 2, 2)
        assert after["plan"]["name"].startswith("derived-") and "damped_passes" in after
    if video:
        from scalecrafter_video.outputs.media import read_video

        assert read_video(path).shape == (4, height, width, 3)
        assert meta["frames"] == 4 and meta["motion"]["frames"] == 4
    else:
        assert Image.open(path).size == (width, height)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, path.with_suffix(".json").name])


def test_stage_plans_restrained_and_none(scv, tmp_path, monkeypatch, tiny_sd):
    monkeypatch.setattr(tiny, "tiny_pipeline", lambda name: tiny_sd)
    names = set()
    for plan, expected in (("restrained", "restrained-256x256"), ("none", None)):
        code, out, err = scv(*GEN, "--model", "tiny-sd", "--res", "256x256", "--stage-plan", plan, "--out", tmp_path)
        assert code == 0, err
        names.add(out.strip())
        stages = _sidecar(Path(out.strip()))["cascade"]["stages"]
        assert (stages[-1]["plan"] or {}).get("name") == expected
        if plan == "restrained":
            rules = stages[-1]["plan"]["main"]
            assert [r["selector"] for r in rules] == list(RESTRAINED_LAYERS) and rules[0]["factor"] == 4
    assert len(names) == 2
    assert not any("_conv_forward" in m.__dict__ for m in tiny_sd.unet.modules())


@pytest.mark.parametrize(
    "args, message",
    [
        (("--restart", "0"), "restart must be above 0 and below 1"),
        (("--skip-exponent", "0"), "skip exponent must be above 0"),
        (("--method", "direct"), "--cascade sets the method of each stage with --stage-plan"),
        (("--res", "64x64"), "a cascade needs a size above the base size 64x64, got 64x64"),
    ],
)
def test_cascade_refusals_before_any_weights(scv, tmp_path, no_weights_or_network, args, message):
    code, out, err = scv(*GEN, "--model", "tiny-sd", "--res", "128x128", *args, "--out", tmp_path)
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not any(tmp_path.iterdir())


def test_a_restart_per_stage_from_the_command_line(scv, tmp_path, monkeypatch, tiny_sd):
    monkeypatch.setattr(tiny, "tiny_pipeline", lambda name: tiny_sd)
    args = ("generate", "--no-progress", "--cascade", "--steps", "4", "--model", "tiny-sd", "--res", "256x256")
    code, out, err = scv(*args, "--restart", "0.3,0.7", "--out", tmp_path)
    assert code == 0, err
    meta = _sidecar(Path(out.strip()))
    assert meta["output_settings"]["cascade"]["restart"] == [0.3, 0.7]
    stages = meta["cascade"]["stages"][1:]
    assert [(s["restart"], s["start_step"], s["steps"]) for s in stages] == [(0.3, 1, 3), (0.7, 2, 2)]
    code, out, err = scv(*args, "--restart", "0.5,x", "--out", tmp_path / "bad")
    assert code == 2 and "restart must be a fraction or fractions separated by commas" in err
    assert err.count("\n") == 1 and not (tmp_path / "bad").exists()


def test_cascade_options_need_cascade(scv, tmp_path, no_weights_or_network):
    code, out, err = scv("generate", "--model", "tiny-sd", "--res", "128x128", "--restart", "0.5", "--out", tmp_path)
    assert code == 2 and "--restart only applies to a cascade: add --cascade" in err


# ---- the Python entry point -----------------------------------------------------------------------
def test_python_entry_point_on_a_stock_pipeline(tiny_sdxl):
    result = cascade(
        tiny_sdxl,
        "a red cube",
        height=256,
        width=128,
        num_inference_steps=2,
        generator=torch.Generator().manual_seed(0),
        stage_plan="restrained",
    )
    assert result.frames.shape == (1, 3, 256, 128) and result.images[0].size == (128, 256)
    assert [s["size"] for s in result.stages] == [[32, 64], [64, 128], [128, 256]]
    assert not any("_conv_forward" in m.__dict__ for m in tiny_sdxl.unet.modules())
    with pytest.raises(ScaleCrafterError, match="not a multiple of 32 pixels"):
        cascade(tiny_sdxl, "x", height=100, width=128)


def test_python_entry_point_refines_a_given_clip(shapes32):
    from scalecrafter_video.models.shapes.builtin import SHAPES_MODELS

    pipe = SHAPES_MODELS["shapes32-motion"].build()
    pipe.set_progress_bar_config(disable=True)
    clip = np.random.default_rng(0).random((3, 32, 32, 3)).astype(np.float32)
    result = cascade(
        pipe,
        "square",
        height=64,
        width=64,
        num_inference_steps=2,
        image=clip,
        generator=torch.Generator().manual_seed(0),
    )
    assert result.frames.shape == (3, 3, 64, 64)
    assert result.stages[0] == {"stage": 0, "size": [32, 32], "from": "input"} and len(result.stages) == 2
    assert math.isfinite(float(result.frames.mean()))


# ---- scv sweep's cascade method ----------------------------------------------------------------------
def test_sweep_cascade_method(scv, tmp_path, monkeypatch, tiny_sd):
    from scalecrafter_video.commands.sweep.manifest import read_manifest

    monkeypatch.setattr(tiny, "tiny_pipeline", lambda name: tiny_sd)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red fox\n")
    out = tmp_path / "sweep"
    args = (
        "sweep",
        "--model",
        "tiny-sd",
        "--prompts",
        prompts,
        "--res",
        "128x128",
        "--steps",
        2,
        "--methods",
        "direct,cascade",
        "--out",
        out,
        "--device",
        "cpu",
        "--no-progress",
    )
    code, stdout, err = scv(*args, "--restart", "0.5")
    assert code == 0, err
    entry = read_manifest(out)["p0-s0-cascade-128x128"]
    side = json.loads((out / entry["sidecar"]).read_text())
    assert side["method"] == "cascade" and len(side["cascade"]["stages"]) == 2
    assert json.loads((out / "sweep.json").read_text())["cascade"]["restart"] == 0.5
    code, stdout, err = scv(*args, "--restart", "0.4")
    assert code == 2 and "holds a sweep with cascade" in err
