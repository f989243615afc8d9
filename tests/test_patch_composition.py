"""The patch among other things done to the same UNet: a T2I-Adapter's residuals consumed by the
main pass, a LoRA added after apply, another `_conv_forward` patcher, torch.compile, and a
pipeline that does not say whether it runs CFG."""

from __future__ import annotations

import logging

import pytest
import torch
from diffusers import DDIMScheduler, UNet2DConditionModel

from scalecrafter_video import (
    Plan,
    apply_scalecrafter,
    remove_scalecrafter,
    scalecrafter,
)
from scalecrafter_video.engine.layers import spatial_convs
from tests.test_patch import assert_pristine, inputs, run, snapshot, tiny_unet

CFG = "uncond,cond"


# ---- the damped pass gets inputs of its own (T2I-Adapter residuals) ----------------------------
def _adapter_residuals(unet: UNet2DConditionModel, batch: int, size: int) -> list[torch.Tensor]:
    """One residual per down block, shaped as that block's hidden states before its downsampler."""
    g = torch.Generator().manual_seed(7)
    return [
        torch.randn(batch, ch, size >> i, size >> i, generator=g)
        for i, ch in enumerate(unet.config.block_out_channels)
    ]


@pytest.mark.parametrize("reuse", [True, False])
def test_damped_pass_sees_every_adapter_residual(reuse):
    """UNet2DConditionModel.forward pops `down_intrablock_additional_residuals` from its list: the
    damped pass must get the unconditional half of all of them, not the main pass's empty list."""
    unet = tiny_unet()
    x = inputs(batch=4, size=32, t=981)
    residuals = _adapter_residuals(unet, 4, 32)
    with torch.no_grad():
        with scalecrafter(unet, 32, 32, batch_layout=CFG, reuse=reuse) as handle:
            out = unet(**x, down_intrablock_additional_residuals=list(residuals)).sample
        assert handle.damped_passes == 1
        plan = handle.plan
        with scalecrafter(unet, 32, 32, plan.without_ndcfg()):
            u_main, c_main = unet(**x, down_intrablock_additional_residuals=list(residuals)).sample.chunk(2)
        half = {k: (v[:2] if v.ndim else v) for k, v in x.items()}
        with scalecrafter(unet, 32, 32, Plan(name="damped", main=plan.damped)):
            u_damped = unet(**half, down_intrablock_additional_residuals=[r[:2] for r in residuals]).sample
    u, c = out.chunk(2)
    torch.testing.assert_close(u, u_damped, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(c - u, c_main - u_main, rtol=1e-4, atol=1e-5)


# ---- convs that appear after apply (LoRA) -------------------------------------------------------
def _lora_config():
    peft = pytest.importorskip("peft")
    return peft.LoraConfig(r=4, lora_alpha=4, target_modules=["conv1", "conv2"], init_lora_weights=False)


def _is_wrapped(conv) -> bool:
    wrapper = conv.__dict__.get("_conv_forward")
    return type(wrapper).__name__ == "_ConvForward" and wrapper.live


def _lora_reference(unet_with_lora) -> torch.Tensor:
    """The same LoRA UNet patched only after its adapter was added."""
    reference = tiny_unet(seed=3)
    reference.add_adapter(_lora_config())
    reference.load_state_dict(unet_with_lora.state_dict())
    with scalecrafter(reference, 32, 32, ndcfg=False):
        return run(reference, size=32)


def test_lora_added_after_apply_is_wrapped_on_the_next_apply():
    unet = tiny_unet(seed=3)
    snap = snapshot(unet)
    first = apply_scalecrafter(unet, 32, 32, ndcfg=False)
    before = first.patched_convs
    unet.add_adapter(_lora_config())
    eligible = [c for convs in spatial_convs(unet).values() for c in convs]
    second = apply_scalecrafter(unet, 32, 32, ndcfg=False)
    assert second.patched_convs == first.patched_convs == len(eligible) > before
    assert all(_is_wrapped(conv) for conv in eligible)  # lora_A 3x3 convs too
    assert torch.equal(run(unet, size=32), _lora_reference(unet))
    assert remove_scalecrafter(unet)
    assert not any("_conv_forward" in m.__dict__ for m in unet.modules())
    assert "_scalecrafter" not in unet.__dict__ and set(unet.__dict__) >= set(snap[1][""])


def test_lora_added_while_a_handle_is_active_is_wrapped_before_the_next_call():
    unet = tiny_unet(seed=3)
    handle = apply_scalecrafter(unet, 32, 32, ndcfg=False)
    unet.add_adapter(_lora_config())
    got = run(unet, size=32)  # the call itself reconciles: no second apply
    eligible = [c for convs in spatial_convs(unet).values() for c in convs]
    assert handle.patched_convs == len(eligible) and all(_is_wrapped(conv) for conv in eligible)
    assert torch.equal(got, _lora_reference(unet))
    unet.delete_adapters("default")  # the LoRA convs leave the UNet: they are let go, the rest still runs
    plain = tiny_unet(seed=3)
    with scalecrafter(plain, 32, 32, ndcfg=False):
        want = run(plain, size=32)
    assert torch.equal(run(unet, size=32), want)
    assert handle.patched_convs == len([c for convs in spatial_convs(unet).values() for c in convs])
    handle.remove()
    assert not any("_conv_forward" in m.__dict__ for m in unet.modules())


# ---- another `_conv_forward` patcher (InvokeAI-style seamless tiling) -------------------------
class Mirror:
    """Saves `conv._conv_forward`, puts a wrapper calling it on a mirrored input, restores what it saved."""

    def __init__(self, conv):
        self.conv, self.saved = conv, conv.__dict__.get("_conv_forward")  # None: the class's own
        inner = conv._conv_forward
        conv._conv_forward = lambda x, weight, bias: inner(x.flip(-1), weight, bias).flip(-1)

    def restore(self):
        if self.saved is None:
            del self.conv._conv_forward
        else:
            self.conv._conv_forward = self.saved


@pytest.fixture(scope="module")
def mirror_case():
    unet = tiny_unet()
    conv = unet.mid_block.resnets[0].conv1
    x = torch.randn(2, conv.in_channels, 8, 8, generator=torch.Generator().manual_seed(3))
    plain = conv(x)
    mirror = Mirror(conv)
    mirrored = conv(x)
    mirror.restore()
    assert not torch.equal(plain, mirrored)
    return unet, conv, x, plain, mirrored


def test_removal_keeps_a_patcher_applied_after_ours(mirror_case):
    unet, conv, x, plain, mirrored = mirror_case
    snap, base = snapshot(unet), run(unet, size=16)
    handle = apply_scalecrafter(
        unet, 16, 16, {"name": "mid", "main": [{"selector": "mid_block", "factor": 2, "stop": 50}]}
    )
    mirror = Mirror(conv)  # wraps ScaleCrafter's wrapper
    assert handle.remove()
    assert torch.equal(conv(x), mirrored)  # the other patch is still in place and working
    mirror.restore()  # puts back ScaleCrafter's wrapper, now a pass-through
    assert torch.equal(conv(x), plain)
    assert torch.equal(run(unet, size=16), base)
    with scalecrafter(unet, 16, 16):  # a later apply drops the pass-through
        pass
    assert_pristine(unet, snap)


def test_removal_restores_a_patcher_applied_before_ours(mirror_case):
    unet, conv, x, plain, mirrored = mirror_case
    snap = snapshot(unet)
    mirror = Mirror(conv)
    handle = apply_scalecrafter(unet, 16, 16)
    assert handle.remove()
    assert type(conv.__dict__["_conv_forward"]).__name__ == "function" and torch.equal(conv(x), mirrored)
    mirror.restore()
    assert torch.equal(conv(x), plain)
    assert_pristine(unet, snap)


# ---- torch.compile --------------------------------------------------------------------------
def _small_unet() -> UNet2DConditionModel:
    """Two levels, no attention: quick to trace."""
    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D",) * 2,
        up_block_types=("UpBlock2D",) * 2,
        block_out_channels=(8, 8),
        layers_per_block=1,
        norm_num_groups=4,
        cross_attention_dim=8,
    ).eval()


@pytest.fixture
def dynamo():
    from torch._dynamo.testing import CompileCounter

    torch._dynamo.reset()
    yield CompileCounter()
    torch._dynamo.reset()


def test_compiled_unet_is_patched_inside_and_compiles_once_per_plan_state(dynamo):
    """2x (window 30 reference steps) over DDIM-5 (reference steps 9, 19, 29, 39, 49): two plan
    states, dilated then plain, so at most two graphs, none at a step whose state was seen."""
    unet = _small_unet()
    compiled = torch.compile(unet, backend=dynamo)
    handle = apply_scalecrafter(compiled, 16, 16)
    assert handle.patched_convs == sum(len(c) for c in spatial_convs(unet).values()) > 0
    assert handle.unet is unet and _is_wrapped(unet.mid_block.resnets[0].conv1)
    scheduler = DDIMScheduler()
    scheduler.set_timesteps(5)
    g = torch.Generator().manual_seed(0)
    x = {"sample": torch.randn(2, 4, 16, 16, generator=g), "encoder_hidden_states": torch.randn(2, 3, 8, generator=g)}
    new_graphs, states = [], []
    with torch.no_grad():
        for t in scheduler.timesteps:
            before = dynamo.frame_count
            out = compiled(**x, timestep=t).sample
            new_graphs.append(dynamo.frame_count - before)
            states.append(bool(handle.plan.factors(float(t), list(spatial_convs(unet)))))
            assert torch.equal(out, unet(**x, timestep=t).sample)  # the eager patched UNet agrees
    assert states == [True, True, True, False, False]
    assert new_graphs[0] >= 1 and new_graphs[1:3] == [0, 0] and new_graphs[4] == 0  # a seen state: no compile
    assert sum(new_graphs) <= 2 * new_graphs[0]  # once per distinct plan state
    assert remove_scalecrafter(compiled)
    assert not any("_conv_forward" in m.__dict__ for m in unet.modules()) and "_scalecrafter" not in unet.__dict__


def test_compiled_unet_layer_names_are_the_plain_ones(dynamo):
    unet = _small_unet()
    plan = {"name": "db1", "main": [{"selector": "down_blocks.1", "factor": 2, "stop": 50}]}
    with scalecrafter(torch.compile(unet, backend=dynamo), 16, 16, plan) as handle:
        assert handle.patched_convs > 0  # was: "layer 'down_blocks.1' is not a re-dilatable conv"


# ---- a pipeline that does not say whether it runs CFG ------------------------------------------
PLAN_WITH_NDCFG = {
    "name": "ndcfg-everywhere",
    "main": [{"selector": "mid_block", "factor": 2, "stop": 50}],
    "damped": [{"selector": "mid_block", "factor": 3, "stop": 50}],
    "ndcfg_stop": 50,
}


@pytest.fixture(scope="module")
def tiny_video3d():
    from scalecrafter_video.models.tiny import tiny_pipeline

    return tiny_pipeline("tiny-video3d")


def _t2v(pipe, guidance_scale):
    return pipe(
        ["a red fox", "a blue bird"],
        height=128,
        width=128,
        num_frames=2,
        num_inference_steps=2,
        guidance_scale=guidance_scale,
        output_type="latent",
        generator=torch.Generator().manual_seed(0),
    ).frames


def test_text_to_video_without_cfg_runs_no_damped_pass(tiny_video3d):
    """TextToVideoSDPipeline keeps `guidance_scale > 1` in a local variable: with two prompts and
    guidance 1.0 its batch [a; b] must not be taken for [uncond; cond]."""
    pipe = tiny_video3d
    with scalecrafter(pipe, 128, 128, PLAN_WITH_NDCFG, family="modelscope", ndcfg=False):
        want = _t2v(pipe, 1.0)
    with scalecrafter(pipe, 128, 128, PLAN_WITH_NDCFG, family="modelscope") as handle:
        got = _t2v(pipe, 1.0)
    assert handle.ndcfg_layout == CFG and handle.unet_calls == 2 and handle.damped_passes == 0
    assert torch.equal(got, want)
    with scalecrafter(pipe, 128, 128, PLAN_WITH_NDCFG, family="modelscope") as handle:
        _t2v(pipe, 7.5)  # the call says it runs CFG: NDCFG runs
    assert handle.damped_passes == 2
    assert "encode_prompt" not in pipe.__dict__


def test_unknown_cfg_runs_no_damped_pass_and_warns_once(tiny_video3d, caplog):
    """UNet calls under a new handle before any pipeline call: whether they are CFG calls is unknown."""
    pipe = tiny_video3d
    x = torch.randn(2, 4, 2, 16, 16)
    text = torch.randn(2, 7, pipe.unet.config.cross_attention_dim)
    with (
        caplog.at_level(logging.WARNING, logger="scalecrafter_video"),
        torch.no_grad(),
        scalecrafter(pipe, 128, 128, PLAN_WITH_NDCFG, family="modelscope") as handle,
    ):
        for _ in range(2):
            pipe.unet(x, 981, encoder_hidden_states=text)
    warnings = [r.getMessage() for r in caplog.records if "does not say whether it runs CFG" in r.getMessage()]
    assert len(warnings) == 1 and "cfg=" in warnings[0]
    assert handle.damped_passes == 0
    with torch.no_grad(), scalecrafter(pipe, 128, 128, PLAN_WITH_NDCFG, family="modelscope", cfg=True) as handle:
        pipe.unet(x, 981, encoder_hidden_states=text)
    assert handle.damped_passes == 1
