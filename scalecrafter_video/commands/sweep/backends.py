"""Generation of one sweep item through the image or video front end, with the pipeline loaded
once per process. A backend's `generate(item)` returns the output in memory and the sidecar's
fields; `write(output, path)` writes it atomically."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from ...jobs import image, video
from ...jobs.common import (
    MethodContext,
    check_size,
    job_sidecar,
    prepare_pipeline,
    run_pipeline,
    set_vae_tiling,
    size_multiple,
    wants_vae_tiling,
)
from ...jobs.loading import LoadedModel, resolve_dtype
from ...jobs.options import GenerateOptions
from ...outputs import files as outputs
from ...outputs.media import frames_dir_of, motion_stats, write_mp4, write_png_frames
from .grid import SweepItem


class Backend(Protocol):
    suffix: str

    def base_size(self) -> tuple[int, int]: ...  # (width, height) in pixels

    def check_size(self, width: int, height: int) -> None: ...

    def check_plan(self, width: int, height: int) -> None: ...

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


class _Backend:
    """What the image and video backends share: the model, loaded and set up once for the sweep."""

    def __init__(self, template: GenerateOptions, device: str, loaded: LoadedModel, dtype):
        self.template, self.loaded, self.device, self.dtype = template, loaded, device, dtype
        self.pipe = loaded.pipe
        self.sampling = prepare_pipeline(self.pipe, replace(template, progress=False), loaded.family)
        self.guidance = self.sampling.guidance

    def base_size(self) -> tuple[int, int]:
        height, width = self.loaded.base
        return width, height

    def check_size(self, width: int, height: int) -> None:
        check_size(height, width, size_multiple(self.pipe))

    def check_plan(self, width: int, height: int) -> None:
        self.method(replace(self.template, width=width, height=height, method="scalecrafter")).check()

    def method(self, opts: GenerateOptions) -> MethodContext:
        """The method around one item's sampling call (the front end's)."""
        raise NotImplementedError

    def _set_up(self, opts: GenerateOptions) -> dict[str, Any]:
        """Tile the VAE decode or not for this item's size; returns the sidecar fields it shares with the job."""
        tiled = set_vae_tiling(self.pipe, wants_vae_tiling(opts.vae_tiling, self.loaded.family, opts.height, opts.width))
        return job_sidecar(opts, self.loaded, replace(self.sampling, vae_tiling=tiled), device=self.device,
                           dtype=self.dtype)


class ImageBackend(_Backend):
    """Any image pipeline `pipelines.image.load_pipeline` loads, called diffusers-style."""

    suffix = ".png"

    def __init__(self, template: GenerateOptions, device: str):
        dtype = resolve_dtype(template.dtype, device)
        loaded = image.load_pipeline(template.model, device=device, dtype=dtype, progress=False, family=template.family)
        super().__init__(template, device, loaded, dtype)

    def method(self, opts: GenerateOptions) -> MethodContext:
        return image.image_method(self.pipe, opts)

    def generate(self, item: SweepItem) -> tuple[Any, dict[str, Any]]:
        opts = item_options(self.template, item)
        start = time.perf_counter()
        meta = self._set_up(opts)
        with self.method(opts) as method_meta:
            result = run_pipeline(self.pipe, opts, item.prompt, item.seed, self.guidance, output_type="pil")
        return result.images[0], {**meta, **method_meta, **_item_meta(item, start)}

    def write(self, output: Any, path: Path) -> None:
        outputs.save_image(output, path)


class VideoBackend(_Backend):
    """The video front end's pipelines (AnimateDiff, ModelScope/Zeroscope, built-in video models)."""

    suffix = ".mp4"

    def __init__(self, template: GenerateOptions, device: str):
        dtype = resolve_dtype(template.dtype, device)
        loaded = video.load_video_pipeline(template, device, dtype)
        video.check_frames(template.frames, loaded.max_frames, f"{template.model!r}")
        super().__init__(template, device, loaded, dtype)

    def method(self, opts: GenerateOptions) -> MethodContext:
        return video.video_method(self.loaded, opts, self.guidance)

    def generate(self, item: SweepItem) -> tuple[Any, dict[str, Any]]:
        opts = item_options(self.template, item)
        start = time.perf_counter()
        meta = self._set_up(opts)
        with self.method(opts) as method_meta:
            latents = video.sample_video(self.pipe, opts, item.prompt, item.seed, self.guidance)
        frames = video.decode_latents(self.pipe, latents, chunk=video.decode_chunk_frames(item.height, item.width))[0]
        return frames, {**meta, "motion_adapter": self.loaded.motion_adapter, "frames": opts.frames, "fps": opts.fps,
                        **method_meta, "motion": motion_stats(frames), **_item_meta(item, start)}

    def write(self, output: Any, path: Path) -> None:
        if self.template.save_frames:  # before the MP4: an MP4 on disk means the item is complete
            write_png_frames(frames_dir_of(path), output, overwrite=True)
        write_mp4(path, output, self.template.fps, overwrite=True)
