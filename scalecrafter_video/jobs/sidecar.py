"""The one sidecar builder: the JSON written next to every output, in one key order for images,
videos and sweep items alike."""

from __future__ import annotations

from typing import Any

from ..outputs import files as outputs
from .loading import LoadedModel
from .options import GenerateOptions
from .sampling import GENERATOR, Sampling


def job_sidecar(
    opts: GenerateOptions, loaded: LoadedModel, sampling: Sampling, *, device: str, dtype
) -> dict[str, Any]:
    """The sidecar fields every output of a job shares: the model, the method's settings, the
    sampler and the environment (each output adds its prompt, seed, plan and what ran)."""
    pipe = loaded.pipe
    scalecrafter = opts.method == "scalecrafter"
    height, width = loaded.base
    meta: dict[str, Any] = {
        "tool": "scalecrafter_video",
        "kind": "video" if opts.video else "image",
        "model": opts.model,
        "model_id": loaded.ref.location,
        "model_source": loaded.ref.kind,
        "model_revision": loaded.revision,
        "pipeline": type(pipe).__name__,
        "unet_class": type(pipe.unet).__name__,
        "family": loaded.family,
        "base_size": [width, height],
        "method": opts.method_name,
        "preset": opts.preset if scalecrafter else None,
        "ndcfg": opts.ndcfg if scalecrafter else None,
        "dispersion": opts.dispersion if scalecrafter else None,
        "progressive": opts.progressive if scalecrafter else None,
        "force_preset": opts.force_preset if scalecrafter else None,
        "width": opts.width,
        "height": opts.height,
        "steps": opts.steps,
        "guidance": sampling.guidance,
        "eta": opts.eta,
        "scheduler": opts.scheduler,
        "scheduler_class": type(pipe.scheduler).__name__,
        "beta_schedule": pipe.scheduler.config.get("beta_schedule"),
        "negative_prompt": opts.negative_prompt,
        "dtype": str(dtype).removeprefix("torch."),
        "device": device,
        "freeu": sampling.freeu,
        "vae_tiling": sampling.vae_tiling,
        "generator": GENERATOR,
    }
    if loaded.ref.builtin is not None:
        meta["note"] = loaded.ref.builtin.note
    meta["versions"] = outputs.versions()
    meta["command"] = opts.command
    return meta
