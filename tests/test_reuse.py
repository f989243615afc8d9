"""Prefix reuse in the NDCFG damped pass: the same prediction as the whole damped pass on every
UNet kind (SD, SDXL with added conditions, AnimateDiff, UNet3D) at steps across the progressive
decay, the damped pass skipped where both plans agree, the cache freed after every call, and
the UNet exactly as before once the patch is removed."""

from __future__ import annotations

import pytest
import torch
from diffusers import UNet2DConditionModel

from helpers import MOVING_PREFIX
from scalecrafter_video import apply_scalecrafter, remove_scalecrafter, scalecrafter
from scalecrafter_video.engine.reuse import differing_layers, shared_prefix
from scalecrafter_video.models.tiny import TINY_UNET_CONFIGS

FRAMES = 2
SIZE = 16  # latent side: 2x the tiny models' sample_size of 8
CFG = "uncond,cond"  # every call's batch is [uncond; cond], as a CFG pipeline passes it
PLAN = MOVING_PREFIX  # the first differing layer moves with the progressive decay (tests/helpers.py)
STEP_0, STEP_14, STEP_20, STEP_40 = 981, 701, 581, 181  # t = 981 - 20 i


def _cfg_inputs(unet, kind: str):
    """A CFG batch [uncond x2; cond x2] for the tiny UNet of `kind` as its pipeline passes it."""
    if kind in ("tiny-sd", "tiny-sdxl"):
        shape = (4, 4, SIZE, SIZE)
        context_rows = 4
    else:
        shape = (4, 4, FRAMES, SIZE, SIZE)
        # AnimateDiffPipeline repeats the text context per frame; UNet3DConditionModel does it itself
        context_rows = 4 * FRAMES if type(unet).__name__ == "UNetMotionModel" else 4
    g = torch.Generator().manual_seed(1)
    kwargs = dict(
        sample=torch.randn(shape, generator=g),
        encoder_hidden_states=torch.randn(context_rows, 7, unet.config.cross_attention_dim, generator=g),
    )
    if kind == "tiny-sdxl":
        kwargs["added_cond_kwargs"] = dict(
            text_embeds=torch.randn(4, unet.config.projection_class_embeddings_input_dim - 6 * 8, generator=g),
            time_ids=torch.randn(4, 6, generator=g),
        )
    return kwargs


def _cast(value, dtype):
    if torch.is_tensor(value):
        return value.to(dtype) if value.is_floating_point() else value
    if isinstance(value, dict):
        return {k: _cast(v, dtype) for k, v in value.items()}
    return value


def _predict(unet, kwargs, t, **apply_kwargs):
    with torch.no_grad(), scalecrafter(unet, SIZE, SIZE, PLAN, batch_layout=CFG, **apply_kwargs) as handle:
        out = unet(**kwargs, timestep=t, return_dict=False)[0]
        reuse = handle.prefix_reuse
        return out, (reuse.reused_units if reuse else 0)


KINDS = ["tiny-sd", "tiny-sdxl", "tiny-video", "tiny-video3d"]


@pytest.fixture(scope="module", params=KINDS)
def model(request):
    """The UNet of conftest's session pipeline of that kind (seed 0; tests take their patches off
    again) and its inputs."""
    unet = request.getfixturevalue(request.param.replace("-", "_")).unet
    return unet, _cfg_inputs(unet, request.param)


def _prefix_units(unet, step_kind: str) -> int:
    """How many units the damped pass should take from the main pass at each kind of step."""
    first = ["conv_in"] + (["transformer_in"] if hasattr(unet, "transformer_in") else [])
    if step_kind == "early":  # first difference at down_blocks.1
        return len(first) + 1
    return len(first) + len(unet.down_blocks) + 1  # first difference at up_blocks.0


@pytest.mark.parametrize("t,step_kind", [(STEP_0, "early"), (STEP_14, "late")])
def test_reuse_equals_the_whole_damped_pass(model, t, step_kind):
    """float64: equal to rounding (the prefix ran on the whole batch, not on half of it);
    float32: within 1e-6 of the output's scale."""
    unet, kwargs = model
    try:
        for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-6)):
            unet.to(dtype)
            x = _cast(kwargs, dtype)
            full, none_reused = _predict(unet, x, t, reuse=False)
            reused, units = _predict(unet, x, t)
            assert none_reused == 0 and units == _prefix_units(unet, step_kind)
            scale = full.abs().max()
            assert (reused - full).abs().max() <= tol * scale, dtype
    finally:
        unet.to(torch.float32)  # the session pipeline's dtype (float32 -> float64 -> float32 is exact)


def test_equal_plans_skip_the_damped_pass_and_give_plain_cfg(model):
    unet, kwargs = model
    calls = []
    hook = unet.conv_in.register_forward_pre_hook(lambda m, a: calls.append(a[0].shape[0]))
    try:
        skipped, _ = _predict(unet, kwargs, STEP_20)
    finally:
        hook.remove()
    assert calls == [calls[0]]  # the main pass only
    with torch.no_grad(), scalecrafter(unet, SIZE, SIZE, PLAN.without_ndcfg()):
        plain = unet(**kwargs, timestep=STEP_20, return_dict=False)[0]
    assert torch.equal(skipped, plain)
    full, _ = _predict(unet, kwargs, STEP_20, reuse=False)  # [u; u + (c - u)]: plain up to rounding
    torch.testing.assert_close(full, plain, rtol=0, atol=1e-5)


def test_outside_the_ndcfg_window_nothing_is_cached(model):
    unet, kwargs = model
    out, units = _predict(unet, kwargs, STEP_40)
    assert units == 0


def test_cache_is_freed_after_each_call_and_after_errors(model):
    unet, kwargs = model
    with torch.no_grad(), scalecrafter(unet, SIZE, SIZE, PLAN, batch_layout=CFG) as handle:
        reuse = handle.prefix_reuse
        unet(**kwargs, timestep=STEP_0)
        assert reuse.cache == {} and reuse.cached_bytes == 0 and reuse.peak_bytes > 0
        # a failure late in the damped pass (conv_out's second call): the cache goes, and every
        # unit runs its own forward again
        calls = []

        def fail_in_damped_pass(module, args):
            calls.append(1)
            if len(calls) == 2:
                raise RuntimeError("boom")

        boom = unet.conv_out.register_forward_pre_hook(fail_in_damped_pass)
        try:
            with pytest.raises(RuntimeError, match="boom"):
                unet(**kwargs, timestep=STEP_0)
        finally:
            boom.remove()
        assert reuse.cache == {} and reuse.cached_bytes == 0
        assert all("forward" not in module.__dict__ for _, module in reuse.units)


def test_remove_leaves_the_unet_bit_identical(model):
    unet, kwargs = model
    weights = {k: v.clone() for k, v in unet.state_dict().items()}
    dicts = {n: set(m.__dict__) for n, m in unet.named_modules()}
    hooks = {n: (dict(m._forward_pre_hooks), dict(m._forward_hooks)) for n, m in unet.named_modules()}
    with torch.no_grad():
        before = unet(**kwargs, timestep=STEP_0, return_dict=False)[0]
        apply_scalecrafter(unet, SIZE, SIZE, PLAN, batch_layout=CFG)
        unet(**kwargs, timestep=STEP_0)
        unet(**kwargs, timestep=STEP_14)
        remove_scalecrafter(unet)
        after = unet(**kwargs, timestep=STEP_0, return_dict=False)[0]
    assert torch.equal(before, after)
    now = unet.state_dict()
    assert all(torch.equal(now[k], v) for k, v in weights.items())
    assert {n: set(m.__dict__) for n, m in unet.named_modules()} == dicts
    assert {n: (dict(m._forward_pre_hooks), dict(m._forward_hooks)) for n, m in unet.named_modules()} == hooks


def test_prefix_ends_at_the_first_differing_unit():
    units = ["conv_in", "down_blocks.0", "down_blocks.1", "down_blocks.10", "mid_block", "up_blocks.0"]
    main = {"down_blocks.10.resnets.0.conv1": (2.0, 2.0), "up_blocks.0.resnets.0.conv1": (4.0, 4.0)}
    damped = {"down_blocks.10.resnets.0.conv1": (2.0, 2.0), "up_blocks.0.resnets.0.conv1": (2.0, 2.0)}
    assert differing_layers(main, damped) == {"up_blocks.0.resnets.0.conv1"}
    assert shared_prefix(units, differing_layers(main, damped)) == units[:-1]
    assert shared_prefix(units, {"down_blocks.10.resnets.0.conv1"}) == units[:3]
    assert shared_prefix(units, set()) == units


def test_units_with_offload_hooks_keep_them():
    """accelerate's hooks replace a module's forward (sequential CPU offload hooks every module with
    weights): the damped pass serves the cached units around them, and puts them back."""
    from accelerate.hooks import ModelHook, add_hook_to_module, remove_hook_from_module

    class Count(ModelHook):
        def __init__(self):
            super().__init__()
            self.calls = 0

        def pre_forward(self, module, *args, **kwargs):
            self.calls += 1
            return args, kwargs

    torch.manual_seed(0)  # its own tiny-sd UNet: accelerate's removed hooks leave a `forward` attribute behind
    unet = UNet2DConditionModel(**TINY_UNET_CONFIGS["tiny-sd"]).eval()
    kwargs = _cfg_inputs(unet, "tiny-sd")
    want, _ = _predict(unet, kwargs, STEP_0, reuse=False)
    hooks = {name: Count() for name in ("conv_in", "down_blocks.0", "down_blocks.1")}
    for name, hook in hooks.items():
        add_hook_to_module(unet.get_submodule(name), hook)
    forwards = {name: unet.get_submodule(name).__dict__["forward"] for name in hooks}
    try:
        got, units = _predict(unet, kwargs, STEP_0)
        assert units == 2 and torch.allclose(got, want, rtol=0, atol=1e-6 * want.abs().max())
        # conv_in and down_blocks.0 ran once (main pass), down_blocks.1 twice (it differs)
        assert [hooks[n].calls for n in hooks] == [1, 1, 2]
        assert {name: unet.get_submodule(name).__dict__["forward"] for name in hooks} == forwards
    finally:
        for name in hooks:
            remove_hook_from_module(unet.get_submodule(name))
