"""Seeded batch sampling for the demo benchmarks, through ShapesPipeline (DDIM + CFG with the
batch [uncond; cond], so the engine's NDCFG hook applies unchanged)."""

from __future__ import annotations

from collections.abc import MutableMapping

import numpy as np
import torch

from ...models.shapes.pipeline import ShapesPipeline

BATCH_LAYOUT = (
    "uncond,cond"  # every UNet call below gets [uncond; cond]: NDCFG may run (apply_scalecrafter's batch_layout)
)


def initial_noise(n: int, height: int, width: int, seed: int, frames: int | None = None) -> torch.Tensor:
    """Per-sample seeded noise: sample i of any case at a given size starts from the same noise.
    (n, 3, H, W), or (n, 3, frames, H, W) for clips."""
    shape = (3, height, width) if frames is None else (3, frames, height, width)
    out = torch.empty(n, *shape)
    for i in range(n):
        g = torch.Generator().manual_seed(seed * 100003 + i)
        out[i] = torch.randn(shape, generator=g)
    return out


def _step_callback(progress):
    """A diffusers-style `callback_on_step_end` that ticks `progress` and changes nothing (it returns
    the step's tensors as given, whatever `progress` returns: tqdm's update returns a bool)."""

    def step_done(pipe, step, timestep, tensors):
        progress(1)
        return tensors

    return step_done


@torch.no_grad()
def sample(
    model,
    labels: torch.Tensor,
    height: int,
    width: int,
    *,
    steps: int = 50,
    guidance: float = 3.0,
    eta: float = 1.0,
    seed: int = 0,
    batch: int = 8,
    frames: int | None = None,
    progress=None,
    done: MutableMapping[int, np.ndarray] | None = None,
) -> np.ndarray:
    """Images (N, H, W, 3) from a DemoModel, or clips (N, frames, H, W, 3) from a DemoVideoModel,
    in [0, 1] as float32. `progress` is called with the number of UNet steps done after each step
    (e.g. a tqdm bar's update). `done`: batches already sampled, keyed by their first index (each
    batch's noise and generator depend only on that index, `seed` and `batch`), which are reused;
    every batch sampled is stored in it as it finishes, so a long run can stop and resume."""
    pipe = ShapesPipeline.from_model(model)
    pipe.set_progress_bar_config(disable=True)
    if pipe.is_video and frames is None:
        frames = pipe.config.default_frames
    n = labels.shape[0]
    device = next(model.unet.parameters()).device  # noise is made on the CPU, then moved
    noise = initial_noise(n, height, width, seed, frames)
    names = pipe.config.class_names
    step_done = None if progress is None else _step_callback(progress)
    outs = []
    for lo in range(0, n, batch):
        if done is not None and lo in done:
            outs.append(done[lo])
            continue
        g = torch.Generator().manual_seed(seed * 7919 + lo + 1)
        out = pipe(
            [names[int(i)] for i in labels[lo : lo + batch]],
            height,
            width,
            num_frames=frames,
            num_inference_steps=steps,
            guidance_scale=guidance,
            eta=eta,
            generator=g,
            latents=noise[lo : lo + batch].to(device),
            callback_on_step_end=step_done,
        )
        outs.append(out.frames if pipe.is_video else out.images)
        if done is not None:
            done[lo] = outs[-1]
    return np.concatenate(outs)


@torch.no_grad()
def cascade_sample(
    model,
    labels: torch.Tensor,
    base: np.ndarray,
    height: int,
    width: int,
    *,
    steps: int = 50,
    guidance: float = 3.0,
    eta: float = 1.0,
    seed: int = 0,
    progress=None,
    done: MutableMapping[int, tuple[np.ndarray, int]] | None = None,
    **settings,
) -> tuple[np.ndarray, dict]:
    """Each base sample i (images (N, h, w, 3) or clips (N, F, h, w, 3) in [0, 1], as `sample`
    returns them) refined up to `height` x `width` by the cascade (`scalecrafter_video.jobs.cascade.cascade`,
    as `scv upscale` refines a user's file), with its own generator (seed, i).

    Args:
        settings: the cascade's restart, skip_exponent, stage_plan, motion_exponent (its defaults otherwise).
        progress: called with 1 after each sample.
        done: samples already refined, keyed by index, as (sample, UNet calls); reused, and every
            sample refined is stored in it (a resumable run's store, as `sample`'s).

    Returns:
        (the samples in `base`'s layout at the target size, {"unet_calls": over all samples and stages}).
    """
    from ...jobs.cascade import cascade

    pipe = ShapesPipeline.from_model(model)
    pipe.set_progress_bar_config(disable=True)
    video = base.ndim == 5
    names = pipe.config.class_names
    out, calls = [], 0
    for i, label in enumerate(labels.tolist()):
        if done is not None and i in done:
            got, n_calls = done[i]
            out.append(got)
            calls += n_calls
            continue
        generator = torch.Generator().manual_seed(seed * 1_000_003 + i)
        start = base[i] if video else base[i][None]  # (F, h, w, 3) frames, as a user's file reads
        result = cascade(
            pipe,
            names[label],
            height,
            width,
            num_inference_steps=steps,
            guidance_scale=guidance,
            eta=eta,
            generator=generator,
            image=start,
            **settings,
        )
        got = result.frames.permute(0, 2, 3, 1).numpy()
        out.append(got if video else got[0])
        n_calls = sum(stage.get("unet_calls", 0) for stage in result.stages)
        calls += n_calls
        if done is not None:
            done[i] = (out[-1], n_calls)
        if progress is not None:
            progress(1)
    return np.stack(out).astype(np.float32), {"unet_calls": calls}
