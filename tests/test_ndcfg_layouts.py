"""NDCFG runs only where the CFG batch layout is known: the stock pipelines of the table (their
layout checked here on tiny pipelines), classes that declare it, bare UNets given batch_layout.
Everywhere else one warning and re-dilation alone; the handle counts what ran."""

import logging

import pytest
import torch

from helpers import inputs
from scalecrafter_video import ScaleCrafterError, apply_scalecrafter, scalecrafter
from scalecrafter_video.engine.layouts import STOCK_LAYOUTS, batch_layout

PROMPT, NEGATIVE = "a red fox", "blurry"


def _record_unet_calls(unet):
    calls = []

    def hook(module, args, kwargs):
        sample = args[0] if args else kwargs["sample"]
        text = kwargs.get("encoder_hidden_states", args[2] if len(args) > 2 else None)
        calls.append((sample.shape[0], text))

    return calls, unet.register_forward_pre_hook(hook, with_kwargs=True)


@pytest.mark.parametrize("name", ["tiny_sd", "tiny_sdxl", "tiny_video", "tiny_video3d"])
def test_stock_pipelines_batch_uncond_then_cond(request, name):
    """The first half of every CFG UNet batch is the unconditional (negative-prompt) branch."""
    pipe = request.getfixturevalue(name)
    video = name.startswith("tiny_video")
    per_prompt = 1 if video else 2
    kwargs = dict(num_frames=2) if video else dict(num_images_per_prompt=per_prompt)
    calls, hook = _record_unet_calls(pipe.unet)
    try:
        pipe(
            PROMPT,
            negative_prompt=NEGATIVE,
            height=64,
            width=64,
            num_inference_steps=1,
            guidance_scale=7.5,
            output_type="latent",
            **kwargs,
        )
    finally:
        hook.remove()
    encoded = pipe.encode_prompt(
        prompt=PROMPT,
        device="cpu",
        num_images_per_prompt=per_prompt,
        do_classifier_free_guidance=True,
        negative_prompt=NEGATIVE,
    )
    cond, uncond = encoded[0], encoded[1]
    if type(pipe.unet).__name__ == "UNetMotionModel":  # AnimateDiff repeats the text per frame
        cond, uncond = cond.repeat_interleave(2, dim=0), uncond.repeat_interleave(2, dim=0)
    ((batch, text),) = calls
    assert batch % 2 == 0 and batch // 2 == per_prompt
    first, second = text.chunk(2)
    torch.testing.assert_close(first, uncond)
    torch.testing.assert_close(second, cond)
    assert batch_layout(pipe) == STOCK_LAYOUTS[type(pipe).__name__] == "uncond,cond"


@pytest.mark.parametrize("name", ["tiny_sd", "tiny_sdxl", "tiny_video", "tiny_video3d"])
def test_refining_siblings_batch_uncond_then_cond(request, name):
    """The img2img / video-to-video siblings the cascade refines with (from_pipe) batch [uncond; cond] too."""
    from scalecrafter_video.jobs.cascade import refiner_of

    pipe = request.getfixturevalue(name)
    refiner = refiner_of(pipe)
    video = name.startswith("tiny_video")
    frames = torch.rand(2 if video else 1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    given = {"video": frames.unsqueeze(0)} if video else {"image": frames}
    calls, hook = _record_unet_calls(refiner.unet)
    try:
        refiner(
            prompt=PROMPT,
            negative_prompt=NEGATIVE,
            strength=0.5,
            num_inference_steps=2,
            guidance_scale=7.5,
            output_type="latent",
            **given,
        )
    finally:
        hook.remove()
    encoded = pipe.encode_prompt(
        prompt=PROMPT,
        device="cpu",
        num_images_per_prompt=1,
        do_classifier_free_guidance=True,
        negative_prompt=NEGATIVE,
    )
    cond, uncond = encoded[0], encoded[1]
    if type(pipe.unet).__name__ == "UNetMotionModel":
        cond, uncond = cond.repeat_interleave(2, dim=0), uncond.repeat_interleave(2, dim=0)
    ((batch, text),) = calls
    first, second = text.chunk(2)
    torch.testing.assert_close(first, uncond)
    torch.testing.assert_close(second, cond)
    assert refiner is not pipe and refiner.unet is pipe.unet
    assert batch_layout(refiner) == STOCK_LAYOUTS[type(refiner).__name__] == "uncond,cond"


def test_counters_on_a_stock_pipeline(tiny_sd):
    """4x per side: DDIM-2 visits t=501 (NDCFG window open) and t=1 (closed): 2 UNet calls, 1 damped pass."""
    with scalecrafter(tiny_sd, 256, 256) as handle:
        tiny_sd("x", height=256, width=256, num_inference_steps=2, output_type="latent")
    assert handle.ndcfg_layout == "uncond,cond"
    assert (handle.unet_calls, handle.damped_passes) == (2, 1)
    with scalecrafter(tiny_sd, 256, 256, ndcfg=False) as handle:
        tiny_sd("x", height=256, width=256, num_inference_steps=2, output_type="latent")
    assert handle.ndcfg_layout is None and (handle.unet_calls, handle.damped_passes) == (2, 0)


@pytest.fixture(scope="module")
def tiny_pag():
    from diffusers import StableDiffusionPAGPipeline

    from scalecrafter_video.models.tiny import tiny_pipeline

    sd = tiny_pipeline("tiny-sd", seed=1)
    return StableDiffusionPAGPipeline(**sd.components, pag_applied_layers="mid")


def test_pag_pipeline_warns_and_runs_without_ndcfg(tiny_pag, caplog):
    """PAG with CFG and 2 images per prompt batches [u1, u2, c1, c2, p1, p2]: NDCFG would damp
    [u1, u2, c1]. It warns once, re-dilates, and never runs a damped pass."""
    calls, hook = _record_unet_calls(tiny_pag.unet)
    try:
        with caplog.at_level(logging.WARNING, logger="scalecrafter_video"):
            with scalecrafter(tiny_pag, 256, 256) as handle:
                tiny_pag(
                    "x",
                    height=256,
                    width=256,
                    num_inference_steps=2,
                    num_images_per_prompt=2,
                    pag_scale=3.0,
                    guidance_scale=7.5,
                    output_type="latent",
                )
    finally:
        hook.remove()
    warnings = [r.getMessage() for r in caplog.records if "noise-damped CFG is off" in r.getMessage()]
    assert len(warnings) == 1 and "StableDiffusionPAGPipeline" in warnings[0]
    assert handle.ndcfg_layout is None and handle.plan.damped  # the plan has a window; NDCFG did not run
    assert (handle.unet_calls, handle.damped_passes) == (2, 0)
    assert [b for b, _ in calls] == [6, 6]


def test_declared_layout_runs_ndcfg_and_undeclared_subclass_does_not(tiny_sd, caplog):
    from diffusers import StableDiffusionPipeline

    class Declared(StableDiffusionPipeline):
        scalecrafter_batch_layout = "uncond,cond"

    class Undeclared(StableDiffusionPipeline):
        pass

    class Wrong(StableDiffusionPipeline):
        scalecrafter_batch_layout = "cond,uncond"

    components = tiny_sd.components
    pipe = Declared(**components)
    with scalecrafter(pipe, 256, 256) as handle:
        pipe("x", height=256, width=256, num_inference_steps=2, output_type="latent")
    assert handle.ndcfg_layout == "uncond,cond" and handle.damped_passes == 1
    pipe = Undeclared(**components)
    with caplog.at_level(logging.WARNING, logger="scalecrafter_video"):
        with scalecrafter(pipe, 256, 256) as handle:
            pipe("x", height=256, width=256, num_inference_steps=2, output_type="latent")
    assert handle.ndcfg_layout is None and handle.damped_passes == 0
    assert any("Undeclared" in r.getMessage() for r in caplog.records)
    with pytest.raises(ScaleCrafterError, match="unknown CFG batch layout 'cond,uncond'; supported: uncond,cond"):
        apply_scalecrafter(Wrong(**components), 256, 256)


def test_bare_unet_runs_ndcfg_only_when_the_layout_is_declared(caplog, bare_unet):
    unet = bare_unet
    x = inputs(batch=4, size=32, t=981)
    with torch.no_grad():
        with caplog.at_level(logging.WARNING, logger="scalecrafter_video"):
            with scalecrafter(unet, 32, 32) as undeclared:
                plain = unet(**x).sample
        with scalecrafter(unet, 32, 32, ndcfg=False):
            assert torch.equal(unet(**x).sample, plain)
        with scalecrafter(unet, 32, 32, batch_layout="uncond,cond") as declared:
            damped = unet(**x).sample
    assert any("bare UNet" in r.getMessage() for r in caplog.records)
    assert undeclared.ndcfg_layout is None and undeclared.damped_passes == 0
    assert declared.ndcfg_layout == "uncond,cond" and declared.damped_passes == 1
    assert not torch.equal(damped, plain)


def test_sidecar_says_what_ran(scv, tmp_path):
    import json
    from pathlib import Path

    code, out, err = scv(
        "generate", "--model", "tiny-sd", "--res", "256x256", "--steps", "2", "--no-progress", "--out", tmp_path
    )
    assert code == 0, err
    meta = json.loads(Path(out.strip()).with_suffix(".json").read_text())
    assert (meta["ndcfg_layout"], meta["unet_calls"], meta["damped_passes"]) == ("uncond,cond", 2, 1)
