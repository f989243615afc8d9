"""Helpers shared by several test modules (fixtures live in conftest.py): the bare tiny UNet of the
engine tests, its inputs and a forward pass, a snapshot to prove a UNet pristine, and the plan whose
first differing layer moves with the progressive decay."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import UNet2DConditionModel

from scalecrafter_video import Plan


def tiny_unet(seed=0) -> UNet2DConditionModel:
    """A bare SD-1.5-layout UNet (4 levels, sample_size 8, 16 channels): conftest's session
    `bare_unet` is tiny_unet(0); build a fresh one for a test that changes the weights."""
    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        block_out_channels=(16, 16, 32, 32),
        layers_per_block=1,
        norm_num_groups=8,
        cross_attention_dim=16,
        attention_head_dim=4,
    ).eval()


def inputs(batch=2, size=16, t=981, seed=1):
    """Seeded keyword arguments for tiny_unet: latents, timestep, text states."""
    g = torch.Generator().manual_seed(seed)
    return dict(
        sample=torch.randn(batch, 4, size, size, generator=g),
        timestep=torch.tensor(t),
        encoder_hidden_states=torch.randn(batch, 5, 16, generator=g),
    )


def run(unet, **kw):
    with torch.no_grad():
        return unet(**inputs(**kw)).sample


def snapshot(unet):
    """Weights, every module's attributes and the UNet's hooks, for assert_pristine."""
    return (
        {k: v.clone() for k, v in unet.state_dict().items()},
        {n: dict(m.__dict__) for n, m in unet.named_modules()},
        (dict(unet._forward_pre_hooks), dict(unet._forward_hooks)),
    )


def assert_pristine(unet, snap):
    weights, dicts, hooks = snap
    now = unet.state_dict()
    assert all(torch.equal(now[k], v) for k, v in weights.items())
    for name, module in unet.named_modules():
        assert set(module.__dict__) == set(dicts[name]), name
        assert "_conv_forward" not in module.__dict__
    assert (dict(unet._forward_pre_hooks), dict(unet._forward_hooks)) == hooks


# Main and damped plans whose first differing layer moves with the progressive decay:
# reference steps 0-11 differ from down_blocks.1 on (main 3 vs damped 2), steps 12-17 only at
# up_blocks.0 (main decayed to 3 vs 2), steps 18-34 not at all (both at 2), 35+ no NDCFG.
MOVING_PREFIX = Plan.from_dict(
    {
        "name": "moving-prefix",
        "main": [
            {"selector": "down_blocks.1", "factor": 3, "stop": 35, "progressive": True},
            {"selector": "down_blocks.2", "factor": 2, "stop": 35, "progressive": True},
            {"selector": "mid_block", "factor": 2, "stop": 35, "progressive": True},
            {"selector": "up_blocks.0", "factor": 4, "stop": 35, "progressive": True},
        ],
        "damped": [
            {"selector": "down_blocks.1", "factor": 2, "stop": 35, "progressive": True},
            {"selector": "down_blocks.2", "factor": 2, "stop": 35, "progressive": True},
            {"selector": "mid_block", "factor": 2, "stop": 35, "progressive": True},
            {"selector": "up_blocks.0", "factor": 2, "stop": 35, "progressive": True},
        ],
        "ndcfg_stop": 35,
    }
)


def one_line_error(code, err, *contains):
    """`scv` exited 2 with one line `scv: error: ...` holding every one of `contains`; returns that line."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("scv: error: "), (code, err)
    for text in contains:
        assert text in lines[0], (text, lines[0])
    return lines[0]


def files_in(folder) -> list[str]:
    """Every file and folder under `folder` (relative paths, sorted); [] when it does not exist."""
    folder = Path(folder)
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []
