"""Generation of one sweep item through the image or video front end, with the pipeline loaded
once per process. A backend's `generate(item)` returns the output in memory and the sidecar's
fields; `write(output, path)` writes it atomically."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from .. import outputs
from ..options import GenerateOptions
from .grid import SweepItem

class Backend(Protocol):
    suffix: str

    def base_size(self) -> tuple[int, int]: ...  # (width, height) in pixels

    def check_size(self, width: int, height: int) -> None: ...

    def generate(self, item: SweepItem) -> tuple[Any, dict[str, Any]]: ...

    def write(self, output: Any, path: Path) -> None: ...


def item_options(template: GenerateOptions, item: SweepItem) -> GenerateOptions:
    return replace(template, prompts=[item.prompt], width=item.width, height=item.height, method=item.method,
                   seed=item.seed, num_per_prompt=1, progress=False)


def _item_meta(item: SweepItem, start: float) -> dict[str, Any]:
    return {"prompt": item.prompt, "prompt_index": item.prompt_index, "seed_index": item.seed_index,
            "seed": item.seed, "method": item.method, "width": item.width, "height": item.height,
            "base": item.base, "seconds": round(time.perf_counter() - start, 3),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}


class ImageBackend:
    """Any image pipeline `pipelines.image.load_pipeline` loads, called diffusers-style."""

    suffix = ".png"

    def __init__(self, template: GenerateOptions, device: str):
        from ..pipelines import image

        self.template = template
        dtype = image.resolve_dtype(template.dtype, device)
        self.info = image.inspect_model(template.model)
        loaded = image.load_pipeline(self.info, device=device, dtype=dtype, progress=False, family=template.family)
        self.pipe, family = loaded.pipe, loaded.family
        image.configure_scheduler(self.pipe, template.scheduler)
        self.freeu = image.FREEU_PARAMS[family] if template.freeu else None
        if self.freeu:  # a freshly loaded pipeline has FreeU off; pipelines without FreeU are left alone
            self.pipe.enable_freeu(**self.freeu)
        self.pipe.set_progress_bar_config(disable=True)
        self.family = family
        self.guidance = template.guidance if template.guidance is not None else image.DEFAULT_GUIDANCE[family]
        self.meta = {
            "tool": "scalecrafter_video", "kind": "image", "model": template.model,
            "model_id": loaded.ref.location, "model_revision": self.info.revision, "family": family,
            "base_size": list(self.base_size()), "steps": template.steps, "guidance": self.guidance,
            "eta": template.eta, "scheduler": template.scheduler, "negative_prompt": template.negative_prompt,
            "dtype": str(dtype).removeprefix("torch."), "device": device, "freeu": self.freeu,
            "generator": "torch.Generator('cpu').manual_seed(seed)", "versions": outputs.versions(),
            "command": template.command,
        }

    def base_size(self) -> tuple[int, int]:
        sample = self.pipe.unet.config.sample_size
        h, w = (sample, sample) if isinstance(sample, int) else tuple(sample)
        scale = int(getattr(self.pipe, "vae_scale_factor", 1))
        return w * scale, h * scale

    def check_size(self, width: int, height: int) -> None:
        from ..pipelines import image

        image.check_size(height, width, image.size_multiple(self.pipe))

    def check_plan(self, width: int, height: int) -> None:
        from ..pipelines import image

        image.check_plan(self.info, replace(self.template, width=width, height=height, method="scalecrafter"))

    def generate(self, item: SweepItem) -> tuple[Any, dict[str, Any]]:
        import torch

        from ..pipelines import image

        opts = item_options(self.template, item)
        start = time.perf_counter()
        vae = getattr(self.pipe, "vae", None)  # pixel-space pipelines have none
        tiling = vae is not None and image.wants_vae_tiling(opts.vae_tiling, self.family, item.height, item.width)
        if vae is not None:
            vae.enable_tiling() if tiling else vae.disable_tiling()
        # the diffusers call signature; negative_prompt only when given (not every pipeline takes one)
        extra = {"negative_prompt": opts.negative_prompt} if opts.negative_prompt is not None else {}
        with image.method_context(self.pipe, opts) as (method_meta, handle):
            result = self.pipe(prompt=item.prompt, height=item.height, width=item.width,
                               num_inference_steps=opts.steps, guidance_scale=self.guidance, eta=opts.eta,
                               generator=torch.Generator("cpu").manual_seed(item.seed), output_type="pil", **extra)
            if handle is not None:  # what ran: UNet calls and noise-damped passes among them
                method_meta = {**method_meta, "unet_calls": handle.unet_calls, "damped_passes": handle.damped_passes}
        meta = {**self.meta, **method_meta, "vae_tiling": tiling, **_item_meta(item, start)}
        return result.images[0], meta

    def write(self, output: Any, path: Path) -> None:
        outputs.save_image(output, path)


class VideoBackend:
    """The video front end's pipelines (AnimateDiff, ModelScope/Zeroscope, tiny video models)."""

    suffix = ".mp4"

    def __init__(self, template: GenerateOptions, device: str):
        from ..pipelines import image, video

        self.template = template
        dtype = image.resolve_dtype(template.dtype, device)
        self.loaded = video.load_video_pipeline(template, device, dtype)
        pipe = self.loaded.pipe
        video.check_frames(template.frames, self.loaded.max_frames, f"{template.model!r}")
        if template.scheduler != "ddim" or type(pipe.scheduler).__name__ != "DDIMScheduler":
            image.configure_scheduler(pipe, template.scheduler)
        pipe.set_progress_bar_config(disable=True)
        family = self.loaded.family
        self.guidance = template.guidance if template.guidance is not None else video.DEFAULT_GUIDANCE[family]
        self.meta = {
            "tool": "scalecrafter_video", "kind": "video", "model": template.model,
            "model_id": self.loaded.ref.location, "motion_adapter": self.loaded.motion_adapter, "family": family,
            "base_size": list(self.base_size()), "frames": template.frames, "fps": template.fps,
            "steps": template.steps, "guidance": self.guidance, "eta": template.eta,
            "scheduler": template.scheduler, "negative_prompt": template.negative_prompt,
            "dtype": str(dtype).removeprefix("torch."), "device": device,
            "generator": "torch.Generator('cpu').manual_seed(seed)", "versions": outputs.versions(),
            "command": template.command,
        }

    def base_size(self) -> tuple[int, int]:
        from ..pipelines.video import base_size

        height, width = base_size(self.loaded)
        return width, height

    def check_size(self, width: int, height: int) -> None:
        from ..pipelines.image import check_size
        from ..pipelines.video import size_multiple_for

        pipe = self.loaded.pipe
        levels = len(pipe.unet.config.block_out_channels)
        check_size(height, width, size_multiple_for(levels, int(getattr(pipe, "vae_scale_factor", 8))))

    def check_plan(self, width: int, height: int) -> None:
        """Video plans resolve when applied (the video front end has no meta-device check)."""

    def generate(self, item: SweepItem) -> tuple[Any, dict[str, Any]]:
        from ..media import motion_stats
        from ..pipelines import video

        opts = item_options(self.template, item)
        start = time.perf_counter()
        pipe = self.loaded.pipe
        tiling = max(item.height, item.width) > video.VIDEO_TILING_SIDE
        pipe.vae.enable_tiling() if tiling else pipe.vae.disable_tiling()
        with video.VideoMethod(self.loaded, opts, self.guidance) as method_meta:
            latents = video.sample_video(pipe, opts, item.prompt, item.seed, self.guidance)
        frames = video.decode_latents(pipe, latents, chunk=video.decode_chunk_frames(item.height, item.width))[0]
        meta = {**self.meta, **method_meta, "vae_tiling": tiling, "motion": motion_stats(frames),
                **_item_meta(item, start)}
        return frames, meta

    def write(self, output: Any, path: Path) -> None:
        from ..media import write_mp4

        write_mp4(path, output, self.template.fps, overwrite=True)
