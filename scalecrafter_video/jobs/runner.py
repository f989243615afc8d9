"""The one job runner: `scv generate` (images and videos, `generate.run_job`), `scv ui` and
`scv sweep` run every job through it, in one order, with one write order and one sidecar builder.

The order: the options (no model needed); the output names, collisions and a writable folder;
the model's config files (a fast one-line failure when it is missing offline), its family, what
it takes (class prompts, frames, FreeU), the size and the plan checked on the config's UNet, the
memory estimate; then the weights and the same checks on the loaded pipeline; then each output
is sampled with its own seed and written atomically, the image or video first and its sidecar
last, so a sidecar on disk means its output is complete.

Images and videos differ only where they really do (`image.IMAGE`, `video.VIDEO`, each a `Kind`):
the model inspection and loading, the method's engine arguments, sampling and decoding, the
sidecar fields of the medium and the media writer.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from ..outputs import files as outputs
from .checks import check_memory, check_model_options, check_size, size_multiple, validate_options
from .loading import LoadedModel, ModelCache, ModelInfo, resolve_device, resolve_dtype
from .method import MethodContext
from .options import GenerateOptions
from .sampling import Sampling, prepare_pipeline, set_vae_tiling, wants_vae_tiling
from .sidecar import job_sidecar

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Target:
    """One output of a job: its prompt, index within the prompt, seed and the files it writes."""

    prompt: str
    index: int
    seed: int
    path: Path  # the image or video; its sidecar is `outputs.sidecar_path(path)`
    frames_dir: Path | None = None  # video --save-frames: the lossless PNG frames
    direct: Target | None = None  # video --compare: the direct output written beside it

    def files(self) -> list[Path]:
        """Every file and folder this target (and its direct companion) writes."""
        own = [self.path, outputs.sidecar_path(self.path)] + ([self.frames_dir] if self.frames_dir else [])
        return own + (self.direct.files() if self.direct else [])


@dataclass(frozen=True)
class Inspected:
    """What is known about a job's model from its config files, before any weights load."""

    info: ModelInfo
    family: str | None  # the family, where the config files decide it
    extra: Any = None  # what the kind keeps for loading (the video motion adapter's config)


@dataclass
class Sample:
    """One sampled output in memory and the sidecar fields that describe it."""

    output: Any  # a PIL image, or (frames, H, W, 3) floats in [0, 1]
    opts: GenerateOptions
    fields: dict[str, Any]  # the job's, the method's and the output's, in sidecar order
    seconds: float


class Kind(Protocol):
    """What differs between an image job and a video job."""

    name: str  # "image" | "video"
    noun: str  # for progress bars: "images" | "videos"
    suffix: str  # ".png" | ".mp4"

    def name_extra(self, opts: GenerateOptions) -> str: ...

    def inspect(self, opts: GenerateOptions) -> Inspected: ...

    def check_plan(self, inspected: Inspected, opts: GenerateOptions) -> None: ...

    def decode_frames(self, opts: GenerateOptions) -> int | None: ...

    def load(self, opts: GenerateOptions, inspected: Inspected, device: str, dtype) -> LoadedModel: ...

    def check_loaded(self, loaded: LoadedModel, opts: GenerateOptions) -> None: ...

    def method(self, loaded: LoadedModel, opts: GenerateOptions, guidance: float) -> MethodContext: ...

    def render(self, pipe, opts: GenerateOptions, prompt: str, seed: int, guidance: float): ...

    def decode(self, pipe, raw, opts: GenerateOptions): ...

    def job_fields(self, loaded: LoadedModel, opts: GenerateOptions) -> dict[str, Any]: ...

    def output_fields(self, output, raw) -> dict[str, Any]: ...

    def compare(self, sample: Sample, direct: Sample, direct_path: Path) -> dict[str, Any]: ...

    def write(self, output, path: Path, opts: GenerateOptions, overwrite: bool) -> None: ...


# ---- the job's outputs ------------------------------------------------------------------------
def job_samples(opts: GenerateOptions) -> list[tuple[str, int, int]]:
    """(prompt, index within the prompt, seed) of every output of the job, in order: output k of
    the job has seed `opts.seed + k`."""
    prompts = [(prompt, j) for prompt in opts.prompts for j in range(opts.num_per_prompt)]
    return [(prompt, j, opts.seed + k) for k, (prompt, j) in enumerate(prompts)]


# ---- the runner -------------------------------------------------------------------------------
@dataclass
class Runner:
    """One job's model, checked, loaded and set up once; samples and writes any number of outputs.

    `check()` makes every check that needs no weights, `load()` loads (from `cache` when given:
    `scv ui`) and checks the pipeline, `sample(opts, prompt, seed)` samples one output (the
    options may change size or method: `scv sweep`), `write(sample, target)` writes it.
    """

    opts: GenerateOptions
    kind: Kind
    cache: ModelCache | None = None
    device: str = field(init=False)
    dtype: Any = field(init=False)
    inspected: Inspected | None = field(default=None, init=False)
    loaded: LoadedModel | None = field(default=None, init=False)
    sampling: Sampling | None = field(default=None, init=False)
    _methods: dict[tuple, MethodContext] = field(default_factory=dict, init=False, repr=False)

    # -- before the weights
    def check(self) -> None:
        """Every check of the job that needs no weights, in the one order."""
        validate_options(self.opts)
        self.check_model()
        self.check_job(self.opts)

    def check_model(self) -> None:
        """The device, and the model from its config files: found (a fast one-line failure when it is
        missing offline), its family, and what it takes (class prompts, frames, FreeU)."""
        opts = self.opts
        self.device = resolve_device(opts.device)
        self.dtype = resolve_dtype(opts.dtype, self.device)
        self.inspected = inspected = self.kind.inspect(opts)
        check_model_options(opts, inspected.info.ref, inspected.family)

    def check_job(self, opts: GenerateOptions) -> None:
        """The size, the plan and the memory estimate of `opts` on the model's config files."""
        inspected = self.inspected
        info = inspected.info
        check_size(opts.height, opts.width, info.size_multiple)
        if opts.method == "scalecrafter":
            self.kind.check_plan(inspected, opts)
        if info.configs_known:
            check_memory(opts, info.unet_config, info.vae_config, info.vae_scale_factor, self.dtype, self.device,
                         inspected.family, decode_frames=self.kind.decode_frames(opts))

    # -- the weights
    def load(self) -> LoadedModel:
        """The job's pipeline (from the cache when it holds one for this model, device and dtype), with
        the job's sampler, FreeU, VAE tiling and progress bar."""
        if self.inspected is None:
            self.check_model()
        opts, t0 = self.opts, time.perf_counter()
        key = (opts.model, opts.video, opts.family, opts.motion_adapter, self.device, str(self.dtype))

        def load() -> LoadedModel:
            return self.kind.load(opts, self.inspected, self.device, self.dtype)

        self.loaded = loaded = load() if self.cache is None else self.cache.get(key, load)
        self.kind.check_loaded(loaded, opts)
        check_model_options(opts, loaded.ref, loaded.family)  # the family may be known only now
        logger.info("loaded %s (%s, family %s) in %.1fs", loaded.ref.location, type(loaded.pipe.unet).__name__,
                    loaded.family, time.perf_counter() - t0)
        self.sampling = prepare_pipeline(loaded.pipe, opts, loaded.family)
        return loaded

    def check_loaded(self, opts: GenerateOptions) -> None:
        """The size and (where the config files did not tell) the memory of `opts` on the loaded pipeline,
        and the plan once more on its UNet: before anything is sampled or written."""
        pipe = self.loaded.pipe
        check_size(opts.height, opts.width, size_multiple(pipe))
        if not self.inspected.info.configs_known:
            check_memory(opts, dict(pipe.unet.config), dict(pipe.vae.config), int(pipe.vae_scale_factor), self.dtype,
                         self.device, self.loaded.family, decode_frames=self.kind.decode_frames(opts))
        self.method(opts).check()

    def method(self, opts: GenerateOptions) -> MethodContext:
        """The method around sampling `opts` (one context per size and method, so its notices are said once)."""
        key = (opts.method, opts.height, opts.width)
        if key not in self._methods:
            self._methods[key] = self.kind.method(self.loaded, opts, self.sampling.guidance)
        return self._methods[key]

    # -- each output
    def sample(self, opts: GenerateOptions, prompt: str, seed: int) -> Sample:
        """Sample one output of `opts` (this job's options, or a sweep item's) in memory."""
        pipe, start = self.loaded.pipe, time.perf_counter()
        tiled = set_vae_tiling(pipe, wants_vae_tiling(opts.vae_tiling, self.loaded.family, opts.height, opts.width))
        sampling = replace(self.sampling, vae_tiling=tiled)
        fields = job_sidecar(opts, self.loaded, sampling, device=self.device, dtype=self.dtype)
        fields.update(self.kind.job_fields(self.loaded, opts))
        fields["output_settings"] = opts.output_settings()  # what the name's hash covers, with the prompt
        with self.method(opts) as method_fields:
            raw = self.kind.render(pipe, opts, prompt, seed, sampling.guidance)
        output = self.kind.decode(pipe, raw, opts)
        fields.update(method_fields)
        fields.update(self.kind.output_fields(output, raw))
        return Sample(output, opts, fields, round(time.perf_counter() - start, 3))

    def sidecar(self, sample: Sample, prompt: str, seed: int, index: int, **item: Any) -> dict[str, Any]:
        """The one sidecar layout: what it is (prompt, seed, index, a sweep item's fields), how it was
        made (the job, the method, the output), how long it took and when."""
        return {"prompt": prompt, "seed": seed, "index": index, **item, **sample.fields, "seconds": sample.seconds}

    def write(self, sample: Sample, target: Target, meta: dict[str, Any], *, overwrite: bool) -> list[Path]:
        """The frames folder, the image or video, then the sidecar, each atomically; on failure (Ctrl-C
        too) what this call wrote is removed, so no output is left without its sidecar."""
        from ..outputs.media import write_png_frames

        meta["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        done: list[Path] = []
        try:
            if target.frames_dir is not None:
                write_png_frames(target.frames_dir, sample.output, overwrite=overwrite)
                done.append(target.frames_dir)
                meta["frames_dir"] = str(target.frames_dir)
            self.kind.write(sample.output, target.path, sample.opts, overwrite)
            done.append(target.path)
            outputs.write_sidecar(target.path, meta)
        except BaseException:
            for p in done:
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            raise
        logger.info("wrote %s", target.path)
        return done

    def run(self, todo: list[Target]) -> list[Path]:
        """Sample and write `todo` (this job's targets); returns the paths written, in order."""
        from tqdm.auto import tqdm

        opts = self.opts
        outputs.prepare_out_dir(Path(opts.out_dir))
        direct_opts = replace(opts, method="direct")
        written: list[Path] = []
        for target in tqdm(todo, desc=self.kind.noun, unit=self.kind.name, disable=not opts.progress or len(todo) < 2):
            sample = self.sample(opts, target.prompt, target.seed)
            meta = self.sidecar(sample, target.prompt, target.seed, target.index)
            if target.direct is not None:
                direct = self.sample(direct_opts, target.prompt, target.seed)
                d_meta = self.sidecar(direct, target.prompt, target.seed, target.index, compare_of=str(target.path))
                meta["compare"] = self.kind.compare(sample, direct, target.direct.path)
                self.write(direct, target.direct, d_meta, overwrite=opts.overwrite)
            self.write(sample, target, meta, overwrite=opts.overwrite)
            written += [target.path] + ([target.direct.path] if target.direct else [])
        return written
