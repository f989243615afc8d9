"""The patch's lifetime: windows that open and close where the plan says on every sampler, the
patch freed with its UNet, and a Ctrl-C mid-call leaving nothing behind."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler

from scalecrafter_video import Plan, apply_scalecrafter, scalecrafter
from scalecrafter_video.engine.plan import derive_plan
from scalecrafter_video.models.tiny import tiny_pipeline
from tests.test_patch import inputs, run, tiny_unet

SAMPLERS = {
    "ddim-trailing": lambda: DDIMScheduler(timestep_spacing="trailing"),
    "ddim-linspace": lambda: DDIMScheduler(timestep_spacing="linspace"),
    "dpm-solver": DPMSolverMultistepScheduler,
    "euler": EulerDiscreteScheduler,
}
LAYERS = ["down_blocks.1.resnets.0.conv1", "mid_block.resnets.0.conv1", "up_blocks.0.resnets.0.conv1"]
CLOSED = Plan.from_dict(
    {
        "name": "closed-windows",
        "main": [{"selector": "mid_block", "factor": 2, "stop": 0}],
        "damped": [{"selector": "mid_block", "factor": 3, "stop": 0}],
        "ndcfg_stop": 0,
        "dispersion": ["mid_block"],
        "dispersion_stop": 0,
    }
)


def _timesteps(sampler: str, steps: int = 20) -> list[float]:
    scheduler = SAMPLERS[sampler]()
    scheduler.set_timesteps(steps)
    return [float(t) for t in scheduler.timesteps]


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_windows_of_zero_steps_never_open(sampler):
    """t = 999 is reference step -0.9: below every stop, and a window of 0 steps must stay shut there."""
    timesteps = _timesteps(sampler)
    assert timesteps[0] == 999
    for t in timesteps:
        assert not CLOSED.ndcfg_active(t) and not CLOSED.dispersion_active(t), t
        assert CLOSED.factors(t, LAYERS) == {} and CLOSED.factors(t, LAYERS, "damped") == {}, t
    uniform = derive_plan(3, (32, 32), (64, 64), units="samples")  # 2x: no NDCFG window
    assert uniform.ndcfg_stop == 0 and not any(uniform.ndcfg_active(t) for t in timesteps)
    assert uniform.factors(999, LAYERS)  # a window of 30 steps is open at t = 999


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_window_edges_on_samplers_starting_at_999(sampler):
    """Open windows: open at the sampler's first timestep, shut once the reference step reaches the stop."""
    graded = derive_plan(3, (32, 32), (128, 128), units="samples")  # 4x: every window 35 steps
    layer = "mid_block.resnets.0.conv1"
    for t in _timesteps(sampler):
        step = graded.step_of(t)
        assert graded.ndcfg_active(t) == (step < 35), t
        assert graded.dispersion_active(t) == (step < 35), t
        assert (layer in graded.factors(t, [layer])) == (step < 35), t
        assert (layer in graded.factors(t, [layer], "damped")) == (step < 35), t


def test_no_damped_pass_at_t999_without_an_ndcfg_window():
    """The 2x plan has no NDCFG window: a sampler starting at t = 999 must not run a damped pass."""
    unet = tiny_unet()
    with torch.no_grad(), scalecrafter(unet, 16, 16, batch_layout="uncond,cond") as handle:
        assert handle.plan.ndcfg_stop == 0
        for t in (999, 0):
            unet(**inputs(batch=2, size=16, t=t))
    assert (handle.unet_calls, handle.damped_passes) == (2, 0)


# ---- the patch lives and dies with its UNet ---------------------------------------------------
@pytest.mark.parametrize("name", ["tiny-sd", "tiny-video3d"])
@pytest.mark.parametrize("keep_handle", [False, True])
def test_unet_is_freed_with_its_pipeline_while_patched(name, keep_handle):
    """Applied and never removed: nothing global keeps the UNet (or the pipeline) alive, not even the handle."""
    pipe = tiny_pipeline(name)
    family = "modelscope" if name == "tiny-video3d" else None
    handle = apply_scalecrafter(pipe, 256, 256, family=family)
    assert handle.active
    unet, whole = weakref.ref(pipe.unet), weakref.ref(pipe)
    if not keep_handle:
        del handle
    del pipe
    gc.collect()
    assert unet() is None and whole() is None
    if keep_handle:
        assert handle.unet is None and not handle.active and handle.patched_convs == 0 and handle.remove() is False


def test_bare_unet_is_freed_after_calls():
    unet = tiny_unet()
    with torch.no_grad():
        apply_scalecrafter(unet, 32, 32, batch_layout="uncond,cond", dispersion=True)
        unet(**inputs(batch=2, size=32, t=981))
    ref = weakref.ref(unet)
    del unet
    gc.collect()
    assert ref() is None


# ---- Ctrl-C inside a UNet call --------------------------------------------------------------
class Interrupt:
    """Raise KeyboardInterrupt from the `n`-th call of a conv (a forward pre-hook: mid UNet call)."""

    def __init__(self, conv, n: int = 1):
        self.n, self.calls = n, 0
        self.handle = conv.register_forward_pre_hook(self)

    def __call__(self, module, args):
        self.calls += 1
        if self.calls == self.n:
            raise KeyboardInterrupt


def _leftovers(unet) -> dict:
    patch = unet.__dict__["_scalecrafter"]
    kernels = patch.state.kernels
    return {
        "factors": patch.state.factors,
        "dispersed": patch.state.dispersed,
        "damped": patch.damped,
        "damped inputs": patch.damped_inputs,
        "cache": patch.prefix.cache,
        "cached bytes": patch.prefix.cached_bytes,
        "armed": patch.prefix._prefix,
        "kernels": kernels._kept if kernels is not None else {},
        "replaced forwards": [n for n, m in patch.prefix.units if "forward" in m.__dict__],
    }


@pytest.mark.parametrize("where", ["main pass", "damped pass"])
def test_keyboard_interrupt_mid_call_releases_the_cache_and_kernels(where):
    """torch's always_call hooks see only Exception: a KeyboardInterrupt inside the UNet must still
    drop the prefix cache, the dispersed kernels and the per-call state; the next call is a fresh one."""
    unet = tiny_unet()
    x = inputs(batch=4, size=32, t=981)
    options = {"batch_layout": "uncond,cond", "dispersion": True}
    with torch.no_grad(), scalecrafter(unet, 32, 32, **options):
        want = unet(**x).sample
    conv = unet.up_blocks[1].resnets[0].conv1  # after the shared prefix was cached, inside a dispersed level
    with torch.no_grad(), scalecrafter(unet, 32, 32, **options) as handle:
        interrupt = Interrupt(conv, 1 if where == "main pass" else 2)
        try:
            with pytest.raises(KeyboardInterrupt):
                unet(**x)
        finally:
            interrupt.handle.remove()
        assert interrupt.calls == interrupt.n
        assert handle.prefix_reuse.peak_bytes > 0 or where == "main pass"
        assert not any(_leftovers(unet).values()), _leftovers(unet)
        assert torch.equal(unet(**x).sample, want)


def test_interrupts_are_caught_after_accelerate_rehooks_forward():
    """Model CPU offload re-hooks the UNet's forward after every pipeline call, which drops a forward
    wrapper put on top of it: the plan still runs (torch hooks), and the guard comes back."""
    from accelerate.hooks import ModelHook, add_hook_to_module, remove_hook_from_module

    unet = tiny_unet()
    x = inputs(batch=4, size=32, t=981)
    with torch.no_grad(), scalecrafter(unet, 32, 32, batch_layout="uncond,cond"):
        want = unet(**x).sample
    add_hook_to_module(unet, ModelHook())
    try:
        with torch.no_grad(), scalecrafter(unet, 32, 32, batch_layout="uncond,cond"):
            remove_hook_from_module(unet)
            add_hook_to_module(unet, ModelHook())  # what maybe_free_model_hooks does
            assert torch.equal(unet(**x).sample, want)  # the plan ran; the guard is back on top
            interrupt = Interrupt(unet.up_blocks[1].resnets[0].conv1)
            try:
                with pytest.raises(KeyboardInterrupt):
                    unet(**x)
            finally:
                interrupt.handle.remove()
            assert not any(_leftovers(unet).values()), _leftovers(unet)
            assert torch.equal(unet(**x).sample, want)
    finally:
        remove_hook_from_module(unet)
    # accelerate leaves the bound method it saved as an instance attribute; nothing of ours is left
    assert getattr(unet.__dict__.get("forward"), "__func__", None) is type(unet).forward
    assert torch.equal(run(unet, size=32), run(tiny_unet(), size=32))
