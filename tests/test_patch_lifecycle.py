"""The patch's lifetime: windows that open and close where the plan says on every sampler, the
patch freed with its UNet, and a Ctrl-C mid-call leaving nothing behind."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler

from scalecrafter_video import Plan, scalecrafter
from scalecrafter_video.engine.plan import derive_plan
from tests.test_patch import inputs, tiny_unet

SAMPLERS = {
    "ddim-trailing": lambda: DDIMScheduler(timestep_spacing="trailing"),
    "ddim-linspace": lambda: DDIMScheduler(timestep_spacing="linspace"),
    "dpm-solver": DPMSolverMultistepScheduler,
    "euler": EulerDiscreteScheduler,
}
LAYERS = ["down_blocks.1.resnets.0.conv1", "mid_block.resnets.0.conv1", "up_blocks.0.resnets.0.conv1"]
CLOSED = Plan.from_dict({
    "name": "closed-windows",
    "main": [{"selector": "mid_block", "factor": 2, "stop": 0}],
    "damped": [{"selector": "mid_block", "factor": 3, "stop": 0}],
    "ndcfg_stop": 0,
    "dispersion": ["mid_block"],
    "dispersion_stop": 0,
})


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
