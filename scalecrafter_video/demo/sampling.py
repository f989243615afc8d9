"""DDIM sampling with classifier-free guidance over the bare demo UNet.

Each UNet call gets the batch [uncond; cond] and guidance is eps = u + w (c - u), so the engine's
NDCFG hook (which rewrites the output to [u_damped; u_damped + c_main - u_main]) applies unchanged.
"""

from __future__ import annotations

import numpy as np
import torch

from .model import DemoModel

BATCH_LAYOUT = "uncond,cond"  # every UNet call below gets [uncond; cond]: NDCFG may run (apply_scalecrafter's batch_layout)


def make_scheduler(model: DemoModel, steps: int):
    from diffusers import DDIMScheduler

    sched = DDIMScheduler.from_config(model.config["scheduler"])
    sched.set_timesteps(steps)
    return sched


def initial_noise(n: int, height: int, width: int, seed: int) -> torch.Tensor:
    """Per-sample seeded noise: sample i of any case at a given size starts from the same noise."""
    out = torch.empty(n, 3, height, width)
    for i in range(n):
        g = torch.Generator().manual_seed(seed * 100003 + i)
        out[i] = torch.randn(3, height, width, generator=g)
    return out


@torch.no_grad()
def sample(model: DemoModel, labels: torch.Tensor, height: int, width: int, *, steps: int = 50,
           guidance: float = 3.0, eta: float = 1.0, seed: int = 0, batch: int = 8,
           progress=None) -> np.ndarray:
    """Images in [0, 1] as a float32 array (N, H, W, 3). `progress` is called with the number of
    UNet steps done after each step (e.g. a tqdm bar's update)."""
    n = labels.shape[0]
    device = next(model.unet.parameters()).device  # noise and labels are made on the CPU, then moved
    noise = initial_noise(n, height, width, seed)
    null = torch.full((1,), model.config["null_class"], dtype=torch.long, device=device)
    outs = []
    for lo in range(0, n, batch):
        x = noise[lo:lo + batch].clone().to(device)
        lab = labels[lo:lo + batch].to(device)
        b = x.shape[0]
        ctx = torch.cat([model.context(null.expand(b)), model.context(lab)])
        sched = make_scheduler(model, steps)
        g = torch.Generator().manual_seed(seed * 7919 + lo + 1)
        for t in sched.timesteps:
            tt = torch.full((2 * b,), int(t), dtype=torch.long, device=device)
            eps = model.unet(torch.cat([x, x]), tt, encoder_hidden_states=ctx).sample
            u, c = eps.chunk(2)
            eps = u + guidance * (c - u)
            x = sched.step(eps, t, x, eta=eta, generator=g).prev_sample
            if progress is not None:
                progress(1)
        outs.append(((x.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).float().cpu().numpy())
    return np.concatenate(outs)
