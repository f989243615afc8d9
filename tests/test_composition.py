"""Composition matrix: ScaleCrafter (NDCFG and prefix reuse on) inside tiny pipelines of the real diffusers
classes with ControlNet, T2I-Adapter, IP-Adapter, LoRA, FreeU, model CPU offload, diffusers' cache
hooks, torch.compile, other `_conv_forward` patchers, and garbage collection after `del`.

Each supported combination is checked the same way (`check_composition`):
- at the base size (64 px) the patch is a no-op: bit-for-bit the unpatched output;
- at 2x (128 px) the output differs from direct sampling, every UNet call ran the noise-damped pass,
  and one captured UNet call equals NDCFG computed by hand from the same inputs (the main plan on the
  whole CFG batch, the damped plan on its unconditional half, [u_d; u_d + c_m - u_m]);
- removed, the pipeline is bit-for-bit direct again and no conv wrapper or hook is left.

docs/compatibility.md is the table of what these tests show.
"""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
import torch
from diffusers import (
    ControlNetModel,
    StableDiffusionAdapterPipeline,
    StableDiffusionControlNetPipeline,
    T2IAdapter,
    UNet2DConditionModel,
)
from PIL import Image

from scalecrafter_video import apply_scalecrafter, remove_scalecrafter, scalecrafter
from scalecrafter_video.models.tiny import TINY_UNET_CONFIGS, tiny_pipeline

STEPS = 2
BASE, DOUBLE = 64, 128  # pixels: the tiny pipelines' base size and 2x per side
UNCOND_COND = "uncond,cond"


def rules(selectors, factor=2):
    return [{"selector": s, "factor": factor, "stop": 50} for s in selectors]


# NDCFG over the whole window; the damped plan is lighter than the main one, so the damped pass reuses the
# main pass's prefix (conv_in, down_blocks.0) and runs the rest itself.
SD_PLAN = {
    "name": "compose-2x",
    "main": rules(
        ["down_blocks.1", "down_blocks.2", "down_blocks.3", "mid_block", "up_blocks.0", "up_blocks.1", "up_blocks.2"]
    ),
    "damped": rules(["down_blocks.3", "mid_block", "up_blocks.0"]),
    "ndcfg_stop": 50,
}


# ---- helpers ----------------------------------------------------------------------------------------
def tree(value, leaf):
    """`value` with every tensor replaced by leaf(tensor), through tuples, lists and dicts (new containers)."""
    if torch.is_tensor(value):
        return leaf(value)
    if isinstance(value, dict):
        return {k: tree(v, leaf) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(tree(v, leaf) for v in value)
    return value


def cloned(value):
    return tree(value, torch.Tensor.clone)


def first_half(value, batch: int):
    """The unconditional half of every batch-sized tensor (the CFG batch is [uncond; cond])."""
    return tree(value, lambda t: t[: batch // 2].clone() if t.ndim and t.shape[0] == batch else t.clone())


def sample_of(output) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output.sample


def split(plan: dict) -> tuple[dict, dict]:
    """The main plan and the damped plan of `plan`, each as a plan of its own without NDCFG."""
    main = {**plan, "damped": [], "ndcfg_stop": 0}
    damped = {**plan, "name": plan["name"] + "-damped", "main": plan["damped"], "damped": [], "ndcfg_stop": 0}
    return main, damped


@torch.no_grad()
def ndcfg_by_hand(unet, args, kwargs, plan: dict) -> torch.Tensor:
    """NDCFG of one UNet call computed from its inputs with two single-plan patches."""
    main, damped = split(plan)
    batch = args[0].shape[0] if args else kwargs["sample"].shape[0]
    with scalecrafter(unet, preset=main, ndcfg=False):
        u_main, c_main = sample_of(unet(*cloned(args), **cloned(kwargs))).chunk(2)
    with scalecrafter(unet, preset=damped, ndcfg=False):
        u_damped = sample_of(unet(*first_half(args, batch), **first_half(kwargs, batch)))
    return torch.cat([u_damped, u_damped + c_main - u_main])


class Capture:
    """The inputs (before the UNet sees them) and the output (after every hook) of a UNet's first call."""

    def __init__(self, unet):
        self.inputs, self.output = None, None
        self.hooks = [
            unet.register_forward_pre_hook(self._pre, with_kwargs=True, prepend=True),
            unet.register_forward_hook(self._post),
        ]

    def _pre(self, module, args, kwargs):
        if self.inputs is None:
            self.inputs = (cloned(args), cloned(kwargs))

    def _post(self, module, args, output):
        if self.output is None:
            self.output = sample_of(output).clone()

    def remove(self):
        for hook in self.hooks:
            hook.remove()


def run(pipe, size: int, **kwargs) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return pipe(
        "a red cube",
        height=size,
        width=size,
        num_inference_steps=STEPS,
        generator=generator,
        output_type="latent",
        **kwargs,
    ).images


def leftovers(unet) -> list[str]:
    return [name for name, m in unet.named_modules() if "_conv_forward" in m.__dict__]


def hook_counts(unet) -> tuple[int, int]:
    return len(unet._forward_pre_hooks), len(unet._forward_hooks)


def check_composition(pipe, plan: dict = SD_PLAN, apply=None, **call):
    """The tri-state check of the module docstring; `apply` patches the pipeline (default: the plan, NDCFG
    on: every pipeline class here has its [uncond; cond] layout in `layouts.STOCK_LAYOUTS`)."""
    unet = pipe.unet
    hooks_before = hook_counts(unet)
    direct_base, direct_double = run(pipe, BASE, **call), run(pipe, DOUBLE, **call)
    handle = (apply or (lambda p: apply_scalecrafter(p, preset=plan)))(pipe)
    try:
        assert handle.ndcfg_layout == UNCOND_COND and handle.prefix_reuse is not None
        assert torch.equal(run(pipe, BASE, **call), direct_base), "the patch must be a no-op at the base size"
        assert (handle.unet_calls, handle.damped_passes) == (STEPS, 0)

        capture = Capture(unet)
        try:
            double = run(pipe, DOUBLE, **call)
        finally:
            capture.remove()
        assert not torch.equal(double, direct_double)
        assert (handle.unet_calls, handle.damped_passes) == (2 * STEPS, STEPS)
        assert handle.prefix_reuse.reused_units
    finally:
        handle.remove()
    assert not leftovers(unet) and hook_counts(unet) == hooks_before
    assert torch.equal(run(pipe, DOUBLE, **call), direct_double), "removed, the patch must leave no trace"
    torch.testing.assert_close(capture.output, ndcfg_by_hand(unet, *capture.inputs, plan))
    return double


def sd_parts(pipe) -> dict:
    return {k: v for k, v in pipe.components.items() if k not in ("image_encoder", "requires_safety_checker")}


def control_image(size: int = DOUBLE) -> Image.Image:
    pixels = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


@pytest.fixture
def fresh_sd():
    """A tiny-sd pipeline of its own, for tests that change the UNet (LoRA, IP-Adapter, FreeU, offload)."""
    return tiny_pipeline("tiny-sd")


# ---- the stock pipeline and conditioning paths ------------------------------------------------------
def test_plain_pipeline(tiny_sd):
    check_composition(tiny_sd, apply=lambda p: apply_scalecrafter(p, preset=SD_PLAN))


def test_controlnet(tiny_sd):
    controlnet = ControlNetModel.from_unet(tiny_sd.unet)
    with torch.no_grad():  # from_unet zero-initialises the residual outputs: give them weights
        generator = torch.Generator().manual_seed(1)
        for name, p in controlnet.named_parameters():
            if name.startswith(
                ("controlnet_down_blocks", "controlnet_mid_block", "controlnet_cond_embedding.conv_out")
            ):
                p.copy_(torch.randn(p.shape, generator=generator) * 0.05)
    pipe = StableDiffusionControlNetPipeline(**sd_parts(tiny_sd), controlnet=controlnet, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    image = control_image()
    without = run(pipe, DOUBLE, image=image, controlnet_conditioning_scale=0.0)
    assert not torch.equal(run(pipe, DOUBLE, image=image), without), "the ControlNet must matter"
    check_composition(pipe, image=image)


def test_t2i_adapter(tiny_sd):
    # The UNet pops the adapter residuals off their list as it goes, so the damped pass must get its own halves.
    adapter = T2IAdapter(
        in_channels=3,
        channels=list(tiny_sd.unet.config.block_out_channels),
        num_res_blocks=1,
        downscale_factor=8,
        adapter_type="full_adapter",
    )
    pipe = StableDiffusionAdapterPipeline(**sd_parts(tiny_sd), adapter=adapter, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    check_composition(pipe, image=control_image())


def load_tiny_ip_adapter(unet: UNet2DConditionModel, image_embed_dim: int = 16) -> None:
    """A random IP-Adapter (image projection + to_k_ip/to_v_ip of every cross-attention) loaded the way
    `load_ip_adapter` does it, from a state dict built in code."""
    generator = torch.Generator().manual_seed(2)
    cross = unet.config.cross_attention_dim
    channels = list(unet.config.block_out_channels)

    def weight(*shape):
        return torch.randn(shape, generator=generator) * 0.05

    ip_layers, key = {}, 1
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue
        if name.startswith("mid_block"):
            hidden = channels[-1]
        elif name.startswith("up_blocks"):
            hidden = channels[::-1][int(name[len("up_blocks.")])]
        else:
            hidden = channels[int(name[len("down_blocks.")])]
        ip_layers[f"{key}.to_k_ip.weight"] = weight(hidden, cross)
        ip_layers[f"{key}.to_v_ip.weight"] = weight(hidden, cross)
        key += 2
    image_proj = {
        "proj.weight": weight(4 * cross, image_embed_dim),
        "proj.bias": weight(4 * cross),
        "norm.weight": torch.ones(cross),
        "norm.bias": torch.zeros(cross),
    }
    unet._load_ip_adapter_weights([{"image_proj": image_proj, "ip_adapter": ip_layers}], low_cpu_mem_usage=False)


def test_ip_adapter_image_embeds(fresh_sd):
    load_tiny_ip_adapter(fresh_sd.unet)
    embeds = [torch.randn(2, 1, 16, generator=torch.Generator().manual_seed(3))]  # [negative; positive]
    other = [torch.cat([embeds[0][:1], -embeds[0][1:]])]
    assert not torch.equal(
        run(fresh_sd, DOUBLE, ip_adapter_image_embeds=embeds), run(fresh_sd, DOUBLE, ip_adapter_image_embeds=other)
    ), "the image embeds must matter"
    check_composition(fresh_sd, apply=lambda p: apply_scalecrafter(p, preset=SD_PLAN), ip_adapter_image_embeds=embeds)


# ---- LoRA ---------------------------------------------------------------------------------------------
def add_lora(unet) -> None:
    from peft import LoraConfig

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(4)  # init_lora_weights=False: random A and B, so the LoRA changes the output
        unet.add_adapter(
            LoraConfig(
                r=4, lora_alpha=4, init_lora_weights=False, target_modules=["conv1", "conv2", "to_q", "to_k", "to_v"]
            )
        )


def test_lora_loaded_before_apply(fresh_sd):
    plain = run(fresh_sd, DOUBLE)
    add_lora(fresh_sd.unet)
    assert not torch.equal(run(fresh_sd, DOUBLE), plain), "the LoRA must matter"
    check_composition(fresh_sd, apply=lambda p: apply_scalecrafter(p, preset=SD_PLAN))


def test_lora_loaded_after_apply(fresh_sd):
    # The same LoRA loaded before apply on a twin pipeline is the reference: the new lora_A convs must follow
    # the plan as the ones present at apply time do.
    twin = tiny_pipeline("tiny-sd")
    add_lora(twin.unet)
    with scalecrafter(twin, preset=SD_PLAN) as before:
        expected, expected_convs = run(twin, DOUBLE), before.patched_convs
    direct = run(twin, DOUBLE)

    handle = apply_scalecrafter(fresh_sd, preset=SD_PLAN)
    try:
        add_lora(fresh_sd.unet)
        assert torch.equal(run(fresh_sd, DOUBLE), expected)
        assert handle.patched_convs == expected_convs and handle.damped_passes == STEPS
    finally:
        handle.remove()
    assert not leftovers(fresh_sd.unet) and torch.equal(run(fresh_sd, DOUBLE), direct)


# ---- other model toggles and hooks ------------------------------------------------------------------
def test_freeu(fresh_sd):
    plain = run(fresh_sd, DOUBLE)
    fresh_sd.enable_freeu(s1=0.9, s2=0.2, b1=1.2, b2=1.4)
    assert not torch.equal(run(fresh_sd, DOUBLE), plain), "FreeU must matter"
    check_composition(fresh_sd, apply=lambda p: apply_scalecrafter(p, preset=SD_PLAN))
    fresh_sd.disable_freeu()
    assert torch.equal(run(fresh_sd, DOUBLE), plain)


@pytest.mark.parametrize("order", ["offload-then-apply", "apply-then-offload"])
def test_model_cpu_offload(fresh_sd, order):
    # accelerate's offload hook replaces unet.forward; ScaleCrafter's torch hooks and its damped pass (which
    # calls that forward) must work in either order. On CPU the "accelerator" is the CPU itself.
    twin = tiny_pipeline("tiny-sd")
    with scalecrafter(twin, preset=SD_PLAN):
        reference = run(twin, DOUBLE)
    if order == "offload-then-apply":
        fresh_sd.enable_model_cpu_offload(device="cpu")

    def apply(p):
        handle = apply_scalecrafter(p, preset=SD_PLAN)
        if order == "apply-then-offload":
            p.enable_model_cpu_offload(device="cpu")
        return handle

    assert torch.equal(check_composition(fresh_sd, apply=apply), reference)
    assert hasattr(fresh_sd.unet, "_hf_hook"), "the offload hook must still be in place"


def tiny_unet(**overrides) -> UNet2DConditionModel:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return UNet2DConditionModel(**{**TINY_UNET_CONFIGS["tiny-sd"], **overrides}).eval()


def test_diffusers_cache_hooks_refuse_a_unet():
    """FirstBlockCache / FasterCache are built for transformer denoisers: a UNet2DConditionModel has no
    `enable_cache` (no CacheMixin), and the hooks fail on it without ScaleCrafter anywhere near."""
    from diffusers.hooks import (
        FasterCacheConfig,
        FirstBlockCacheConfig,
        apply_faster_cache,
        apply_first_block_cache,
    )

    unet = tiny_unet()
    assert not hasattr(unet, "enable_cache")
    with pytest.raises(Exception):  # noqa: B017 (diffusers fails with whatever error its internals hit)
        apply_first_block_cache(unet, FirstBlockCacheConfig(threshold=0.1))
    unet = tiny_unet()
    apply_faster_cache(
        unet, FasterCacheConfig(spatial_attention_block_skip_range=2, current_timestep_callback=lambda: 981)
    )
    with pytest.raises(Exception), torch.no_grad():  # noqa: B017
        unet(torch.randn(2, 4, 8, 8), 981, torch.randn(2, 32, 32))


# ---- torch.compile and garbage collection (bare UNets) ----------------------------------------------
SMALL_UNET = {
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 1,
    "down_block_types": ("DownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "UpBlock2D"),
    "mid_block_type": "UNetMidBlock2D",
    "block_out_channels": (8, 16),
    "norm_num_groups": 4,
    "cross_attention_dim": 8,
}
SMALL_PLAN = {
    "name": "small-2x",
    "main": rules(["down_blocks.1", "mid_block"]),
    "damped": rules(["mid_block"]),
    "ndcfg_stop": 50,
}


def small_unet() -> UNet2DConditionModel:
    """Two levels, no attention: quick for dynamo to trace."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return UNet2DConditionModel(**SMALL_UNET).eval().requires_grad_(False)


def small_call_at(unet, side: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(5)
    sample, context = torch.randn(2, 4, side, side, generator=generator), torch.randn(2, 3, 8, generator=generator)
    with torch.no_grad():
        return unet(sample, torch.tensor(981), context).sample


def small_call(unet) -> torch.Tensor:
    """One call at 2x the small UNet's base size."""
    return small_call_at(unet, 16)


def test_torch_compile_eager_backend():
    unet = small_unet()
    with scalecrafter(unet, preset=SMALL_PLAN, batch_layout=UNCOND_COND) as eager:
        expected = small_call(unet)
    assert eager.damped_passes == 1
    compiled = torch.compile(unet, backend="eager")
    direct = small_call(compiled)
    handle = apply_scalecrafter(compiled, preset=SMALL_PLAN, batch_layout=UNCOND_COND)
    try:
        torch.testing.assert_close(small_call(compiled), expected)
        assert handle.damped_passes == 1
    finally:
        handle.remove()
    assert not leftovers(unet)
    torch.testing.assert_close(small_call(compiled), direct)


def seamless(conv):
    """A conv patcher in the InvokeAI seamless style: its own `_conv_forward`, circular padding."""

    def _conv_forward(input, weight, bias):
        padded = torch.nn.functional.pad(input, (1, 1, 1, 1), mode="circular")
        return torch.nn.functional.conv2d(padded, weight, bias, conv.stride, 0, conv.dilation, conv.groups)

    return _conv_forward


def seamless_convs(unet) -> dict:
    convs = [
        m
        for name, m in unet.named_modules()
        if name.startswith(("down_blocks", "mid_block", "up_blocks"))
        and isinstance(m, torch.nn.Conv2d)
        and m.kernel_size == (3, 3)
        and m.stride == (1, 1)
    ]
    return {conv: seamless(conv) for conv in convs}


def test_a_conv_patcher_set_before_apply_runs_and_comes_back():
    unet = small_unet()
    patched = seamless_convs(unet)
    for conv, forward in patched.items():
        conv._conv_forward = forward
    base = small_call_at(unet, 8)
    with scalecrafter(unet, preset=SMALL_PLAN, batch_layout=UNCOND_COND):
        assert torch.equal(small_call_at(unet, 8), base), "at the base size the other patcher runs as before"
        small_call(unet)
    assert all(conv.__dict__["_conv_forward"] is forward for conv, forward in patched.items())
    assert torch.equal(small_call_at(unet, 8), base)


def test_a_conv_patcher_set_after_apply_is_left_working():
    reference = small_unet()
    for conv, forward in seamless_convs(reference).items():
        conv._conv_forward = forward
    expected = small_call(reference)

    unet = small_unet()
    handle = apply_scalecrafter(unet, preset=SMALL_PLAN, batch_layout=UNCOND_COND)
    patched = seamless_convs(unet)
    for conv, forward in patched.items():
        conv._conv_forward = forward
    handle.remove()
    assert all(conv.__dict__.get("_conv_forward") is forward for conv, forward in patched.items())
    assert torch.equal(small_call(unet), expected)


def test_removed_patch_lets_the_unet_be_collected():
    unet = small_unet()
    handle = apply_scalecrafter(unet, preset=SMALL_PLAN, batch_layout=UNCOND_COND)
    small_call(unet)
    handle.remove()
    ref = weakref.ref(unet)
    del unet, handle
    gc.collect()
    assert ref() is None


def test_patched_unet_is_collected_after_del():
    unet = small_unet()
    handle = apply_scalecrafter(unet, preset=SMALL_PLAN, batch_layout=UNCOND_COND)
    small_call(unet)
    assert handle.damped_passes == 1
    ref = weakref.ref(unet)
    del unet, handle
    gc.collect()
    assert ref() is None


def test_the_shared_pipeline_is_left_unpatched(tiny_sd):
    """The session pipeline the other tests share is left unpatched."""
    assert not remove_scalecrafter(tiny_sd) and not leftovers(tiny_sd.unet)
