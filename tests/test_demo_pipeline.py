"""ShapesPipeline: one DDIM + CFG loop for images and clips, patched by the engine like any pipeline."""

import numpy as np
import pytest
import torch

from scalecrafter_video import (
    ScaleCrafterError,
    apply_attn_sf,
    apply_scalecrafter,
    remove_attn_sf,
    remove_scalecrafter,
)
from scalecrafter_video.commands.demo.sampling import initial_noise, sample
from scalecrafter_video.models.shapes.model import load_demo_model
from scalecrafter_video.models.shapes.motion_model import (
    DemoVideoModel,
    assemble,
    build_motion_adapter,
    motion_config,
)
from scalecrafter_video.models.shapes.pipeline import ShapesPipeline


@pytest.fixture(scope="module")
def image_model():
    return load_demo_model()


@pytest.fixture(scope="module")
def video_model(image_model):
    """shapes32 + a fresh adapter whose output projections are zero: the image model per frame."""
    unet = assemble(image_model.unet, build_motion_adapter()).eval().requires_grad_(False)
    return DemoVideoModel(unet, image_model.embed, motion_config({}, 8), image_model.config)


@pytest.fixture(scope="module")
def trained_like(image_model, interacting_motion_unet):
    return DemoVideoModel(interacting_motion_unet, image_model.embed, motion_config({}, 8), image_model.config)


def _pipe(model):
    pipe = ShapesPipeline.from_model(model)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_untrained_motion_model_is_the_image_model_per_frame(image_model, video_model):
    noise = initial_noise(2, 32, 32, seed=5, frames=3)
    clips = _pipe(video_model)(
        ["circle", "triangle"], num_frames=3, num_inference_steps=3, eta=0.0, latents=noise
    ).frames
    per_frame = noise.permute(0, 2, 1, 3, 4).reshape(6, 3, 32, 32)
    images = _pipe(image_model)(
        ["circle"] * 3 + ["triangle"] * 3, num_inference_steps=3, eta=0.0, latents=per_frame
    ).images
    assert clips.shape == (2, 3, 32, 32, 3)
    assert np.array_equal(clips.reshape(6, 32, 32, 3), images)


def test_pipeline_declares_what_the_engine_needs(video_model):
    pipe = _pipe(video_model)
    assert pipe.scalecrafter_batch_layout == "uncond,cond" and pipe.vae_scale_factor == 1
    pipe(["square"], num_frames=2, num_inference_steps=1, guidance_scale=3.0)
    assert pipe.do_classifier_free_guidance
    pipe(["square"], num_frames=2, num_inference_steps=1, guidance_scale=1.0)
    assert not pipe.do_classifier_free_guidance


def test_sample_is_seeded_and_reports_progress(trained_like):
    ticks = []

    def tick(n):  # like tqdm's update, which returns a bool: the sampler must ignore what it returns
        ticks.append(n)
        return True

    a = sample(trained_like, torch.tensor([0, 1, 2]), 32, 32, steps=2, seed=1, batch=2, frames=2, progress=tick)
    b = sample(trained_like, torch.tensor([0, 1, 2]), 32, 32, steps=2, seed=1, batch=2, frames=2)
    assert a.shape == (3, 2, 32, 32, 3) and np.array_equal(a, b)
    assert sum(ticks) == 2 * 2  # steps x batches


def test_scalecrafter_on_the_pipeline_patches_and_comes_off(trained_like):
    pipe = _pipe(trained_like)
    before = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    kw = dict(
        height=64,
        width=64,
        num_frames=2,
        num_inference_steps=2,
        eta=0.0,
        latents=initial_noise(1, 64, 64, seed=0, frames=2),
    )
    direct = pipe(["circle"], **kw).frames
    handle = apply_scalecrafter(pipe, 64, 64)
    try:
        assert handle.plan.name == "derived-64x64" and handle.patched_convs > 0  # pixels; base 32
        patched = pipe(["circle"], **kw).frames
    finally:
        remove_scalecrafter(pipe)
    again = pipe(["circle"], **kw).frames
    assert not np.array_equal(direct, patched)
    assert np.array_equal(direct, again)
    assert all(torch.equal(before[k], v) for k, v in pipe.unet.state_dict().items())


def test_ndcfg_runs_the_damped_pass_on_the_unconditional_half_only(trained_like):
    pipe = _pipe(trained_like)
    batches = []
    hook = pipe.unet.conv_in.register_forward_hook(lambda m, a, o: batches.append(a[0].shape[0]))
    kw = dict(
        height=128,
        width=128,
        num_frames=2,
        num_inference_steps=2,  # t = 501 (in the window), 1
        latents=initial_noise(1, 128, 128, seed=0, frames=2),
    )
    try:
        with torch.no_grad():
            handle = apply_scalecrafter(pipe, 128, 128)  # 4x: the derived plan has an NDCFG window
            assert handle.ndcfg_layout == "uncond,cond"  # from the pipeline class's declaration
            pipe(["square"], guidance_scale=3.0, **kw)
            # [uncond; cond] x 2 frames, then the damped uncond x 2 frames; after the window, CFG only
            assert batches == [4, 2, 4] and handle.damped_passes == 1
            batches.clear()
            pipe(["square"], guidance_scale=1.0, **kw)  # no CFG: nothing to damp
            assert batches == [2, 2] and handle.damped_passes == 1
    finally:
        hook.remove()
        remove_scalecrafter(pipe)


def test_attn_sf_scales_spatial_self_attention_only(image_model, trained_like):
    pipe = _pipe(trained_like)
    try:
        n_video = apply_attn_sf(pipe, 64, 64)
    finally:
        remove_attn_sf(pipe)
    try:
        n_image = apply_attn_sf(_pipe(image_model), 64, 64)
    finally:
        remove_attn_sf(image_model.unet)
    assert n_video == n_image > 0  # the motion modules' temporal attention is left alone


def test_output_types(image_model, video_model):
    pv, pi = _pipe(video_model), _pipe(image_model)
    kw = dict(num_inference_steps=1)
    assert pv(["circle", "square"], num_frames=2, output_type="pt", **kw).frames.shape == (2, 2, 3, 32, 32)
    pil = pv("circle", num_frames=2, output_type="pil", **kw).frames
    assert len(pil) == 1 and len(pil[0]) == 2 and pil[0][0].size == (32, 32)
    assert pi(["circle"], output_type="np", **kw).images.shape == (1, 32, 32, 3)
    assert len(pi("triangle", output_type="pil", **kw).images) == 1
    (frames,) = pv("circle", num_frames=2, return_dict=False, **kw)
    assert frames.shape == (1, 2, 32, 32, 3)
    assert pv("circle", **kw).frames.shape[1] == 8  # the adapter's trained frame count by default
    # "latent": the pixel-space sample itself, channels first, in [-1, 1] (what the video front end decodes)
    seeded = dict(kw, num_frames=2, generator=torch.Generator().manual_seed(3))
    latent = pv("circle", output_type="latent", **seeded).frames
    assert latent.shape == (1, 3, 2, 32, 32) and latent.min() >= -1.5
    seeded["generator"] = torch.Generator().manual_seed(3)
    assert torch.allclose(
        (latent.clamp(-1, 1) + 1) / 2, pv("circle", output_type="pt", **seeded).frames.permute(0, 2, 1, 3, 4)
    )


@pytest.mark.parametrize(
    "call, message",
    [
        (dict(prompt="dog"), "unknown prompt 'dog'"),
        (dict(prompt="circle", height=30), "height must be a positive multiple of 4"),
        (dict(prompt="circle", num_frames=40), "num_frames must be 1-32"),
        (dict(prompt="circle", num_inference_steps=0), "num_inference_steps must be at least 1"),
        (dict(prompt="circle", output_type="tensor"), "output_type must be one of"),
        (dict(prompt="circle", latents=torch.zeros(1, 3, 32, 32)), "latents must be shaped"),
    ],
)
def test_bad_input_is_a_one_line_error(video_model, call, message):
    with pytest.raises(ScaleCrafterError, match=message) as err:
        _pipe(video_model)(**call)
    assert "\n" not in str(err.value)


def test_frames_on_the_image_model_is_an_error(image_model):
    with pytest.raises(ScaleCrafterError, match="num_frames needs the motion model"):
        _pipe(image_model)("circle", num_frames=8)
