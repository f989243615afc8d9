"""Patching: bit-identical round trips, exception safety, NDCFG inside the hooks, coexistence."""

import pytest
import torch

from helpers import assert_pristine, inputs, run, snapshot, tiny_unet
from scalecrafter_video import (
    Plan,
    ScaleCrafterError,
    apply_attn_sf,
    apply_scalecrafter,
    remove_attn_sf,
    remove_scalecrafter,
    scalecrafter,
)
from scalecrafter_video.engine.layers import spatial_convs


@pytest.fixture(scope="module")
def unet(bare_unet):
    """conftest's session UNet: every test here takes its patches and hooks off again."""
    return bare_unet


def test_apply_remove_is_bit_identical(unet):
    snap, base = snapshot(unet), run(unet, size=32)
    handle = apply_scalecrafter(unet, height=32, width=32)  # 4x per side in sample units
    assert handle.plan.source == "derived" and handle.patched_convs > 0
    patched = run(unet, size=32)
    assert not torch.allclose(patched, base, atol=1e-4)
    assert remove_scalecrafter(unet) is True and remove_scalecrafter(unet) is False
    assert torch.equal(run(unet, size=32), base)
    assert_pristine(unet, snap)


def test_enabled_with_factor_one_equals_baseline_bit_for_bit(unet):
    base = run(unet, size=8)
    with scalecrafter(unet, height=8, width=8) as handle:  # base size: nothing to dilate
        assert handle.plan.main == ()
        assert torch.equal(run(unet, size=8), base)
    explicit = Plan.from_dict({"name": "ones", "main": [{"selector": "mid_block", "factor": 1, "stop": 50}]})
    plain = run(unet, size=16)
    with scalecrafter(unet, 16, 16, explicit):
        assert torch.equal(run(unet, size=16), plain)


def test_patch_outside_window_is_plain(unet):
    base = run(unet, t=101, size=32)
    with scalecrafter(unet, height=32, width=32):
        assert torch.equal(run(unet, t=101, size=32), base)  # ref step 44 > every stop


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_exception_mid_generation_leaves_unet_untouched(unet, exc):
    snap, base = snapshot(unet), run(unet, size=32)
    target = unet.mid_block.resnets[0].conv2
    calls = []

    def boom(module, args):
        calls.append(1)
        raise exc("interrupted")

    handle = target.register_forward_pre_hook(boom)
    try:
        with pytest.raises(exc):
            with scalecrafter(unet, height=32, width=32):
                run(unet, size=32)
    finally:
        handle.remove()
    assert calls
    assert torch.equal(run(unet, size=32), base)
    assert_pristine(unet, snap)


def test_reapply_puts_the_new_plan_on_top(unet):
    apply_scalecrafter(unet, height=32, width=32)
    convs_before = sum(len(v) for v in spatial_convs(unet).values())
    handle = apply_scalecrafter(unet, height=16, width=16)
    assert handle.plan.target == (16, 16)
    want = run(unet)
    remove_scalecrafter(unet)
    assert "_conv_forward" not in unet.mid_block.resnets[0].conv1.__dict__
    with scalecrafter(unet, 16, 16):
        assert torch.equal(run(unet), want)
    assert convs_before > 0


def test_ndcfg_output_and_damped_pass_on_uncond_half_only(unet):
    x = inputs(batch=4, size=32, t=981)
    batches = []
    hook = unet.conv_in.register_forward_pre_hook(lambda m, a: batches.append(a[0].shape[0]))
    try:
        with torch.no_grad(), scalecrafter(unet, height=32, width=32, batch_layout="uncond,cond") as handle:
            out = unet(**x).sample
    finally:
        hook.remove()
    assert batches == [4, 2]
    plan = handle.plan
    main_only = plan.without_ndcfg()
    damped_as_main = Plan(name="damped", main=plan.damped)
    with torch.no_grad():
        with scalecrafter(unet, 32, 32, main_only):
            u_main, c_main = unet(**x).sample.chunk(2)
        half = {k: (v[:2] if v.ndim else v) for k, v in x.items()}
        with scalecrafter(unet, 32, 32, damped_as_main):
            u_damped = unet(**half).sample
    u, c = out.chunk(2)
    torch.testing.assert_close(u, u_damped, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(c - u, c_main - u_main, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(u, u_main, atol=1e-4)


def test_ndcfg_off_and_outside_window(unet):
    x = inputs(batch=2, size=32, t=981)
    with torch.no_grad():
        with scalecrafter(unet, 32, 32, ndcfg=False) as handle:
            plain = unet(**x).sample
        with scalecrafter(unet, 32, 32, handle.plan.without_ndcfg(), batch_layout="uncond,cond"):
            assert torch.equal(unet(**x).sample, plain)
        with scalecrafter(unet, 32, 32, cfg=False, batch_layout="uncond,cond"):  # pipeline says CFG is off
            assert torch.equal(unet(**x).sample, plain)


def test_dispersion_changes_only_when_enabled(unet):
    with scalecrafter(unet, 32, 32, ndcfg=False):
        dilated = run(unet, size=32)
    with scalecrafter(unet, 32, 32, ndcfg=False, dispersion=True) as handle:
        assert handle.plan.dispersion
        dispersed = run(unet, size=32)
    assert dispersed.shape == dilated.shape and not torch.allclose(dispersed, dilated, atol=1e-4)
    assert torch.equal(run(unet, size=32), run(tiny_unet(), size=32))


def test_tuple_output_and_positional_timestep(unet):
    x = inputs(batch=2, size=32)
    with torch.no_grad(), scalecrafter(unet, 32, 32):
        a = unet(x["sample"], x["timestep"], x["encoder_hidden_states"], return_dict=False)[0]
        b = unet(**x).sample
    assert torch.equal(a, b)


def test_errors_are_one_line_scalecrafter_errors(unet):
    with pytest.raises(ScaleCrafterError, match="unsupported UNet class Linear"):
        apply_scalecrafter(torch.nn.Linear(2, 2), 64, 64)
    with pytest.raises(ScaleCrafterError, match="height must be a positive integer"):
        apply_scalecrafter(unet, 0, 64)
    with pytest.raises(ScaleCrafterError, match="unknown preset"):
        apply_scalecrafter(unet, 64, 64, "sd15-2048x2049")
    bad = {"name": "bad", "main": [{"selector": "up_blocks.9", "factor": 2, "stop": 30}]}
    with pytest.raises(ScaleCrafterError, match="up_blocks.9"):
        apply_scalecrafter(unet, 32, 32, bad)
    assert "_conv_forward" not in unet.mid_block.resnets[0].conv1.__dict__


def test_attn_sf_round_trip(unet):
    base = run(unet, size=32)
    n = apply_attn_sf(unet, height=32, width=32)
    assert n == sum(name.endswith(".attn1") for name, _ in unet.named_modules())  # self-attention only
    assert not torch.allclose(run(unet, size=32), base, atol=1e-5)
    assert remove_attn_sf(unet)
    assert torch.equal(run(unet, size=32), base)


def test_coexists_with_freeu(unet):
    unet.enable_freeu(s1=0.9, s2=0.2, b1=1.2, b2=1.4)
    try:
        freeu = run(unet, size=32)
        with scalecrafter(unet, 32, 32):
            assert not torch.allclose(run(unet, size=32), freeu, atol=1e-4)
        assert torch.equal(run(unet, size=32), freeu)
    finally:
        unet.disable_freeu()


def test_coexists_with_accelerate_hooks_in_either_order(unet):
    from accelerate.hooks import ModelHook, add_hook_to_module, remove_hook_from_module

    class Count(ModelHook):
        calls = 0

        def pre_forward(self, module, *args, **kwargs):
            Count.calls += 1
            return args, kwargs

    with scalecrafter(unet, 32, 32, ndcfg=False):
        want = run(unet, size=32)
    for order in ("hook-first", "patch-first"):
        if order == "hook-first":
            add_hook_to_module(unet, Count())
            apply_scalecrafter(unet, 32, 32, ndcfg=False)
        else:
            apply_scalecrafter(unet, 32, 32, ndcfg=False)
            add_hook_to_module(unet, Count())
        try:
            assert torch.equal(run(unet, size=32), want)
            remove_scalecrafter(unet)
            assert hasattr(unet, "_hf_hook")
            calls = Count.calls
            run(unet, size=32)
            assert Count.calls == calls + 1
        finally:
            remove_scalecrafter(unet)
            remove_hook_from_module(unet)


def test_lora_layers_follow_the_plan():
    """A LoRA-wrapped UNet under the plan equals the same UNet with the LoRA merged into its weights."""
    peft = pytest.importorskip("peft")
    unet = tiny_unet(seed=3)
    config = peft.LoraConfig(r=4, lora_alpha=4, target_modules=["conv1", "conv2"], init_lora_weights=False)
    unet.add_adapter(config)
    lora_convs = [
        n
        for n, m in unet.named_modules()
        if "lora_A" in n and isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)
    ]
    assert lora_convs and set(spatial_convs(unet)) >= {"mid_block.resnets.0.conv1"}
    with scalecrafter(unet, 32, 32, ndcfg=False) as handle:
        assert handle.patched_convs > len(spatial_convs(unet))  # base and lora_A convs
        with_lora = run(unet, size=32)
    merged = tiny_unet(seed=3)
    merged.add_adapter(config)
    merged.load_state_dict(unet.state_dict())
    for module in merged.modules():
        if isinstance(module, peft.tuners.lora.LoraLayer):
            module.merge()
    with scalecrafter(merged, 32, 32, ndcfg=False):
        fused = run(merged, size=32)
    torch.testing.assert_close(with_lora, fused, rtol=1e-4, atol=1e-4)


def test_a_pixel_preset_on_a_bare_unet_leaves_it_as_it_was(unet):
    """The refusal (its wording is checked in test_bad_input) touches nothing."""
    snap = snapshot(unet)
    with pytest.raises(ScaleCrafterError, match="bare UNet does not know its VAE"):
        apply_scalecrafter(unet, height=128, width=128, preset="sd15-1024x1024")
    assert_pristine(unet, snap)
