"""What `scv ui` does on a request, without any web framework: which models it offers, the sizes
and prompts (or classes) it proposes for a model, a request turned into the same
`GenerateOptions` jobs `scv generate` runs, the jobs run through the image or video front end
(one cached pipeline per model, the same checks, names, sidecars and atomic writes), and the plan
figure of a ScaleCrafter job.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from huggingface_hub import try_to_load_from_cache

from ...engine.errors import ScaleCrafterError
from ...engine.layers import spatial_convs
from ...engine.plan import Plan
from ...jobs import generate, image, video
from ...jobs import registry as models
from ...jobs.checks import validate_options
from ...jobs.loading import LoadedModel, ModelCache, index_unet_class, read_model_info
from ...jobs.options import GenerateOptions
from ...jobs.registry import BUILTIN_MODELS, IMAGE_ALIASES, VIDEO_ALIASES, resolve_model
from ...jobs.sampling import make_scheduler
from ...jobs.upscale import (
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    Probe,
    probe_input,
    run_upscale,
    upscale_target,
)
from ...outputs import files as outputs
from ..arguments import parse_res
from ..plan_plot import save_plan_plot

logger = logging.getLogger(__name__)

SIDE_BY_SIDE = "side by side"
METHOD_CHOICES = ("direct", "attn-sf", "scalecrafter", SIDE_BY_SIDE)
METHOD_LABELS = {
    "direct": "direct",
    "attn-sf": "Attn-SF",
    "scalecrafter": "ScaleCrafter",
    "upscale": "upscaled (cascade)",
}
UPLOAD_TYPES = (*IMAGE_SUFFIXES, *VIDEO_SUFFIXES)  # what the upscale box takes
# Side by side samples ScaleCrafter first: it can fail where direct sampling cannot (the plan, its
# size limit), so a refused request writes nothing. The page shows direct on the left.
SIDE_BY_SIDE_ORDER = ("scalecrafter", "direct")
SIZE_SCALES = ((1, 1), (2, 2), (3, 3), (4, 4), (2, 4))  # (height, width) per side
FALLBACK_SIZES = ("1024x1024", "2048x2048", "2048x1024")  # a model whose base size is not known offline


# ---- models -----------------------------------------------------------------------------------
def is_video_model(model: str) -> bool:
    """A built-in video model, a video alias (sd15 stays an image model, as in `scv generate`), or a
    folder or cached hub model whose UNet is a video UNet."""
    builtin = BUILTIN_MODELS.get(model)
    if builtin is not None:
        return builtin.video
    if model in IMAGE_ALIASES or model in VIDEO_ALIASES:
        return model not in IMAGE_ALIASES
    try:
        info = read_model_info(resolve_model(model))
    except ScaleCrafterError:
        return False  # not here: the image front end says why when it is asked to generate
    return index_unet_class(info.index) in image.VIDEO_UNETS


def model_choices(current: str | None = None) -> list[str]:
    """The built-in models, then every alias whose weights are in the local Hugging Face cache
    (found without network), and `current` if it is none of these."""
    choices = [name for name, b in BUILTIN_MODELS.items() if not b.video]
    choices += [name for name, b in BUILTIN_MODELS.items() if b.video]
    cached = {**IMAGE_ALIASES, **{a: r for a, r in VIDEO_ALIASES.items() if a not in IMAGE_ALIASES}}
    choices += [
        alias
        for alias, repo in cached.items()
        if _in_cache(repo, "model_index.json")
        and (alias != "animatediff" or _in_cache(video.DEFAULT_MOTION_ADAPTER, "config.json"))
    ]
    if current and current not in choices:
        choices.append(current)
    return choices


def _in_cache(repo: str, filename: str) -> bool:
    return isinstance(try_to_load_from_cache(repo, filename), str)


def model_classes(model: str) -> tuple[str, ...]:
    """A class-conditional built-in model's class names (its only prompts); () for text prompts."""
    builtin = BUILTIN_MODELS.get(model)
    return tuple(builtin.classes or ()) if builtin is not None else ()


def default_frames(model: str) -> int:
    """The frames field's value: a built-in video model's clip length, else generate's default."""
    return models.default_frames(model, GenerateOptions.frames)


def size_choices(model: str) -> list[tuple[str, str]]:
    """(label, WxH) pairs: multiples of the model's base size per side, where it is known offline."""
    try:
        base = read_model_info(resolve_model(model, video=is_video_model(model))).base
    except ScaleCrafterError:
        base = None
    if base is None:
        return [(size, size) for size in FALLBACK_SIZES]
    bh, bw = base
    pairs = []
    for sh, sw in SIZE_SCALES:
        size = f"{bw * sw}x{bh * sh}"
        scale = "base" if (sh, sw) == (1, 1) else f"{sw}x per side" if sh == sw else f"{sw}x wide, {sh}x high"
        pairs.append((f"{size} ({scale})", size))
    return pairs


def default_size(model: str) -> str:
    """Twice the base size per side (the second size choice)."""
    choices = size_choices(model)
    return choices[min(1, len(choices) - 1)][1]


# ---- requests ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Request:
    """What the page asks for. `size` is WIDTHxHEIGHT; `method` one of METHOD_CHOICES."""

    prompt: str
    model: str
    size: str
    method: str
    out_dir: str
    ndcfg: bool = True
    dispersion: bool = False
    steps: int = GenerateOptions.steps
    seed: int = 0
    frames: int = GenerateOptions.frames
    overwrite: bool = False
    device: str = "auto"


def job_options(request: Request) -> list[GenerateOptions]:
    """One `GenerateOptions` per method, in the order they run; every one checked (the checks of
    `scv generate` before any model loads) before the first runs. Without `overwrite`, an output
    that exists is shown again, not sampled again: the same job always has the same name."""
    if request.method not in METHOD_CHOICES:
        raise ScaleCrafterError(f"unknown method {request.method!r}: choose one of {', '.join(METHOD_CHOICES)}")
    _check_model(request)
    methods = SIDE_BY_SIDE_ORDER if request.method == SIDE_BY_SIDE else (request.method,)
    is_video = is_video_model(request.model)
    frames = _whole(request.frames, "frames") if is_video else GenerateOptions.frames
    template = _options(request, video=is_video, frames=frames)
    # the NDCFG and dispersion toggles are ScaleCrafter's; the other methods run as generate runs them
    toggles = dict(ndcfg=request.ndcfg, dispersion=request.dispersion)
    jobs = [replace(template, method=method, **(toggles if method == "scalecrafter" else {})) for method in methods]
    jobs = [replace(opts, command=generate_command(opts)) for opts in jobs]
    for opts in jobs:
        validate_options(opts)
    return jobs


def _check_model(request: Request) -> None:
    """A model is chosen, the prompt is one of a class model's classes, and the output folder is named."""
    if not request.model or not request.model.strip():
        raise ScaleCrafterError("no model chosen: pick one from the list or type a hub id or a folder")
    classes = model_classes(request.model)
    if classes and request.prompt not in classes:
        raise ScaleCrafterError(
            f"{request.model!r} draws one of the classes {', '.join(classes)}; got {request.prompt!r}"
        )
    if not str(request.out_dir).strip():
        raise ScaleCrafterError("the output folder is empty: name a folder (. for the one scv ui started in)")


def _options(request: Request, *, video: bool, frames: int) -> GenerateOptions:
    """The generate options a request asks for (its size, model, sampling and output folder)."""
    width, height = parse_res(request.size)
    return GenerateOptions(
        prompts=[request.prompt],
        height=height,
        width=width,
        model=request.model,
        steps=_whole(request.steps, "steps"),
        seed=_whole(request.seed, "seed"),
        out_dir=Path(request.out_dir).expanduser(),
        overwrite=request.overwrite,
        skip_existing=not request.overwrite,
        device=request.device,
        video=video,
        frames=frames,
    )


def upscale_options(request: Request, input_path: str | None) -> tuple[GenerateOptions, Probe]:
    """The options of an upscale of the uploaded file (`scv upscale`'s, checked) and its probe; the
    request's method and frames do not apply (the file's kind and frame count decide)."""
    if not input_path:
        raise ScaleCrafterError("no file to upscale: drop a PNG/JPEG image or an MP4 clip in the upscale box")
    if not request.model or not request.model.strip():
        raise ScaleCrafterError("no model chosen: pick one from the list or type a hub id or a folder")
    probe = probe_input(input_path)
    if probe.video != is_video_model(request.model):
        what, need = ("a clip", "a video model") if probe.video else ("an image", "an image model")
        raise ScaleCrafterError(f"{what} needs {need}; {request.model!r} is not one")
    _check_model(request)
    opts = replace(
        _options(request, video=probe.video, frames=probe.frames or GenerateOptions.frames),
        fps=probe.fps or GenerateOptions.fps,
        cascade=True,
        ndcfg=request.ndcfg,
        dispersion=request.dispersion,
    )
    command = [
        "scv",
        "upscale",
        str(probe.path),
        "--model",
        opts.model,
        "--prompt",
        request.prompt,
        "--res",
        f"{opts.width}x{opts.height}",
        "--steps",
        str(opts.steps),
        "--seed",
        str(opts.seed),
        "--out",
        str(opts.out_dir),
        *([] if opts.ndcfg else ["--no-ndcfg"]),
        *(["--dispersion"] if opts.dispersion else []),
        *(["--device", opts.device] if opts.device != "auto" else []),
    ]
    opts = replace(opts, command=command)
    validate_options(opts)
    return opts, probe


def run_upscale_job(opts: GenerateOptions, probe: Probe, cache: ModelCache) -> JobResult:
    """An upscale through the one runner with the pipeline from `cache`."""
    written = run_upscale(opts, probe, cache)
    path = upscale_target(opts, probe).path
    if written and written[0] != path:
        raise RuntimeError(f"the upscale wrote {written[0]}, expected {path}")
    sidecar = json.loads(outputs.sidecar_path(path).read_text(encoding="utf-8"))
    return JobResult("upscale", path, sidecar, reused=not written)


def _whole(value: Any, name: str) -> int:
    """Numbers from a web form arrive as floats: whole ones are accepted."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise ScaleCrafterError(f"{name} must be a whole number, got {value!r}")
    return int(value)


def generate_command(opts: GenerateOptions) -> list[str]:
    """The `scv generate` command line of the same job (same options, so the same output name);
    sidecars record it as the command that made the output."""
    command = [
        "scv",
        "generate",
        "--model",
        opts.model,
        "--prompt",
        opts.prompts[0],
        "--res",
        f"{opts.width}x{opts.height}",
        "--method",
        opts.method,
        "--steps",
        str(opts.steps),
        "--seed",
        str(opts.seed),
        "--out",
        str(opts.out_dir),
    ]
    if opts.method == "scalecrafter":
        command += [] if opts.ndcfg else ["--no-ndcfg"]
        command += ["--dispersion"] if opts.dispersion else []
    if opts.video:
        command += ["--video", "--frames", str(opts.frames)]
    if opts.device != "auto":
        command += ["--device", opts.device]
    return command


# ---- running ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class JobResult:
    """One output of a request: its file, its sidecar, and whether it was there already."""

    method: str
    path: Path
    sidecar: dict[str, Any]
    reused: bool

    @property
    def sidecar_path(self) -> Path:
        return outputs.sidecar_path(self.path)


def output_path(opts: GenerateOptions) -> Path:
    """Where `scv generate` writes the (single) output of `opts`."""
    return generate.targets(opts)[0].path


def run_jobs(jobs: list[GenerateOptions], cache: ModelCache) -> list[JobResult]:
    """Each job through the image or video front end with the pipeline from `cache`."""
    results = []
    for opts in jobs:
        written = generate.run_job(opts, cache)
        path = output_path(opts)
        if written and written[0] != path:
            raise RuntimeError(f"the front end wrote {written[0]}, expected {path}")
        sidecar = json.loads(outputs.sidecar_path(path).read_text(encoding="utf-8"))
        results.append(JobResult(opts.method, path, sidecar, reused=not written))
    return results


def load_model(opts: GenerateOptions, cache: ModelCache) -> LoadedModel:
    """The job's pipeline, from `cache` when a job of the same model ran (loaded otherwise)."""
    return generate.load_model(opts, cache)


def plan_plot(result: JobResult, opts: GenerateOptions, cache: ModelCache, path: Path) -> Path | None:
    """The plan figure of a ScaleCrafter output (from its sidecar's plan, on its UNet's layers and
    its sampler's timesteps) written to `path`; None for other methods."""
    if result.sidecar.get("plan") is None:
        return None
    plan = Plan.from_dict(result.sidecar["plan"])
    pipe = load_model(opts, cache).pipe
    scheduler = make_scheduler(opts.scheduler, pipe.scheduler.config)
    scheduler.set_timesteps(opts.steps)
    layers = list(spatial_convs(pipe.unet))
    rows = plan.steps([t.item() for t in scheduler.timesteps], layers, ndcfg=opts.ndcfg)
    title = (
        f"{opts.model} {opts.width}x{opts.height}: plan {plan.name} ({plan.source}), "
        f"{opts.steps} {opts.scheduler} steps"
    )
    return save_plan_plot(plan, rows, layers, path, ndcfg=opts.ndcfg, dispersion=opts.dispersion, title=title)
