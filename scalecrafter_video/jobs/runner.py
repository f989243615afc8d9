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

A cascade (`--cascade`) is one more way to sample an output (`Runner.sample` runs `cascade.run_stages`
with this job's method per stage); `scv upscale` is a cascade whose first stage is the user's file
(`Runner.source`) instead of a base-size sample. Both check, name and write as every other job.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..outputs import files as outputs
from .checks import (
    check_memory,
    check_model_options,
    check_size,
    size_multiple,
    validate_options,
)
from .loading import LoadedModel, ModelCache, ModelInfo, resolve_device, resolve_dtype
from .method import MethodContext
from .options import GenerateOptions
from .sampling import Sampling, prepare_pipeline, set_vae_tiling, wants_vae_tiling
from .sidecar import job_sidecar

if TYPE_CHECKING:
    from .cascade import CascadeConfig

logger = logging.getLogger(__name__)

Size = tuple[int, int]  # (height, width) in pixels


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

    def from_frames(self, frames): ...

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
    options may change size or method: `scv sweep`), `write(sample, target)` writes it. With
    `source` (`scv upscale`) a cascade starts from that file's frames instead of a base sample.
    """

    opts: GenerateOptions
    kind: Kind
    cache: ModelCache | None = None
    source: Any = None  # an `upscale.Source`: its `size`, `frames` and sidecar `fields()`
    device: str = field(init=False)
    dtype: Any = field(init=False)
    inspected: Inspected | None = field(default=None, init=False)
    loaded: LoadedModel | None = field(default=None, init=False)
    sampling: Sampling | None = field(default=None, init=False)
    _methods: dict[tuple, MethodContext] = field(default_factory=dict, init=False, repr=False)
    _refiner: Any = field(default=None, init=False, repr=False)

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
        if opts.cascade and info.base is not None and info.size_multiple:
            for size, final in self._stages(opts, info.base, info.size_multiple)[1:]:
                if opts.stage_plan == "full":
                    self.kind.check_plan(inspected, self._stage_options(opts, size, final, info.base))
        elif opts.method == "scalecrafter":
            self.kind.check_plan(inspected, opts)
        if info.configs_known:
            check_memory(
                opts,
                info.unet_config,
                info.vae_config,
                info.vae_scale_factor,
                self.dtype,
                self.device,
                inspected.family,
                decode_frames=self.kind.decode_frames(opts),
            )

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
        logger.info(
            "loaded %s (%s, family %s) in %.1fs",
            loaded.ref.location,
            type(loaded.pipe.unet).__name__,
            loaded.family,
            time.perf_counter() - t0,
        )
        self.sampling = prepare_pipeline(loaded.pipe, opts, loaded.family)
        return loaded

    def check_loaded(self, opts: GenerateOptions) -> None:
        """The size and (where the config files did not tell) the memory of `opts` on the loaded pipeline,
        and the plan once more on its UNet: before anything is sampled or written."""
        pipe = self.loaded.pipe
        check_size(opts.height, opts.width, size_multiple(pipe))
        if not self.inspected.info.configs_known:
            check_memory(
                opts,
                dict(pipe.unet.config),
                dict(pipe.vae.config),
                int(pipe.vae_scale_factor),
                self.dtype,
                self.device,
                self.loaded.family,
                decode_frames=self.kind.decode_frames(opts),
            )
        if not opts.cascade:
            self.method(opts).check()
            return
        for size, final in self._stages(opts, self.loaded.base, size_multiple(pipe))[1:]:
            self._stage_method(opts, size, final).check()

    def method(self, opts: GenerateOptions) -> MethodContext:
        """The method around sampling `opts` (one context per size and method, so its notices are said once)."""
        key = (opts.method, opts.height, opts.width)
        if key not in self._methods:
            self._methods[key] = self.kind.method(self.loaded, opts, self.sampling.guidance)
        return self._methods[key]

    # -- a cascade's stages
    def _stages(self, opts: GenerateOptions, base: tuple[int, int], multiple: int) -> list[tuple[Size, bool]]:
        """((height, width), whether it is the last) of every stage of a cascade: from the base size,
        or from the size of `source`."""
        from .cascade import cascade_sizes, stage_sizes

        target = (opts.height, opts.width)
        if self.source is None:
            sizes = cascade_sizes(base, target, multiple)
        else:
            sizes = stage_sizes(self.source.size, target, multiple)
        return [(size, k == len(sizes) - 1) for k, size in enumerate(sizes)]

    def _stage_options(self, opts: GenerateOptions, size: Size, final: bool, base: Size) -> GenerateOptions:
        """A stage's options: its size, and the method its plan asks for (the job's preset at the last
        stage; direct within the base size, where every plan runs the UNet as trained)."""
        from .cascade import within

        method = "direct" if opts.stage_plan == "none" or within(size, base) else "scalecrafter"
        return replace(
            opts, height=size[0], width=size[1], method=method, cascade=False, preset=opts.preset if final else "auto"
        )

    def _stage_method(self, opts: GenerateOptions, size: tuple[int, int], final: bool, refiner=None) -> MethodContext:
        """The method around one stage on the refining pipeline: the kind's (full, none) or FreeScale's
        restrained plan."""
        from .cascade import refiner_of, restrained_plan

        if refiner is None:
            if self._refiner is None:
                self._refiner = refiner_of(self.loaded.pipe)
            refiner = self._refiner
        base = self.loaded.base
        stage = self._stage_options(opts, size, final, base)
        if opts.stage_plan == "restrained" and stage.method == "scalecrafter":
            cfg = self.sampling.guidance > 1.0 if opts.video else None
            return MethodContext(refiner, stage, preset=restrained_plan(base, size), base=base, cfg=cfg)
        return self.kind.method(replace(self.loaded, pipe=refiner), stage, self.sampling.guidance)

    def cascade_config(self, opts: GenerateOptions) -> CascadeConfig:
        """The cascade settings of `opts`."""
        from .cascade import CascadeConfig

        return CascadeConfig.of(opts)

    def _cascade(self, opts: GenerateOptions, prompt: str, seed: int) -> tuple[Any, dict[str, Any]]:
        """A cascade of `opts` in memory: (the output, its sidecar fields)."""
        import torch

        from .cascade import RESIZE, refiner_of, run_stages

        pipe, family = self.loaded.pipe, self.loaded.family
        if self._refiner is None:
            self._refiner = refiner_of(pipe)
        stages = self._stages(opts, self.loaded.base, size_multiple(pipe))

        @contextlib.contextmanager
        def method(refiner, size: tuple[int, int], final: bool) -> Iterator[dict[str, Any]]:
            tiled = set_vae_tiling(refiner, wants_vae_tiling(opts.vae_tiling, family, *size))
            with self._stage_method(opts, size, final, refiner) as fields:
                fields["vae_tiling"] = tiled
                yield fields

        config = self.cascade_config(opts)
        source = self.source
        set_vae_tiling(pipe, wants_vae_tiling(opts.vae_tiling, family, *stages[0][0]))
        result = run_stages(
            pipe,
            prompt,
            [size for size, _ in stages],
            config=config,
            method=method,
            steps=opts.steps,
            guidance_scale=self.sampling.guidance,
            frames=source.frames if source is not None else None,
            num_frames=opts.frames if opts.video else None,
            eta=opts.eta,
            negative_prompt=opts.negative_prompt,
            generator=torch.Generator("cpu").manual_seed(seed),
            refiner=self._refiner,
            progress=opts.progress,
        )
        fields: dict[str, Any] = {}
        if source is not None:
            fields["input"] = source.fields()
        fields["cascade"] = {
            **config.to_dict(),
            "resize": RESIZE,
            "generator": "one torch.Generator('cpu').manual_seed(seed): the base, then each stage",
            "stages": result.stages,
        }
        return self.kind.from_frames(result.frames), fields

    # -- each output
    def sample(self, opts: GenerateOptions, prompt: str, seed: int) -> Sample:
        """Sample one output of `opts` (this job's options, or a sweep item's) in memory: with
        `opts.cascade`, by a cascade (from `source` where given)."""
        pipe, start = self.loaded.pipe, time.perf_counter()
        tiled = set_vae_tiling(pipe, wants_vae_tiling(opts.vae_tiling, self.loaded.family, opts.height, opts.width))
        sampling = replace(self.sampling, vae_tiling=tiled)
        fields = job_sidecar(opts, self.loaded, sampling, device=self.device, dtype=self.dtype)
        fields.update(self.kind.job_fields(self.loaded, opts))
        fields["output_settings"] = opts.output_settings()  # what the name's hash covers, with the prompt
        if opts.cascade:
            output, cascade_fields = self._cascade(opts, prompt, seed)
            raw = None
            if self.source is not None:
                fields["method"] = "upscale"
            fields.update(cascade_fields)
        else:
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

        meta["created"] = datetime.now(UTC).isoformat(timespec="seconds")
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
        direct_opts = replace(opts, method="direct", cascade=False)
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
