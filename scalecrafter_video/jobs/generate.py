"""A whole generation job: its outputs named, checked and run through the `runner.Runner` of its
kind (`image.IMAGE` or `video.VIDEO`). `scv generate`, `scv ui` and the Python API call `run_job`."""

from __future__ import annotations

from pathlib import Path

from ..engine.errors import ScaleCrafterError
from ..outputs import files as outputs
from . import image, video
from .checks import validate_options
from .loading import ModelCache
from .options import GenerateOptions
from .runner import Kind, Runner, Target, job_samples


def kind_of(opts: GenerateOptions) -> Kind:
    """The kind of job `opts` asks for: video with `opts.video`, else image."""
    return video.VIDEO if opts.video else image.IMAGE


def targets(opts: GenerateOptions) -> list[Target]:
    """Every output of the job, in order, named by its prompt, size, method, seed and settings."""
    from ..outputs.media import frames_dir_of

    kind = kind_of(opts)
    out_dir, settings = Path(opts.out_dir), opts.output_settings()
    compare = opts.video and opts.compare and opts.method != "direct"
    found = []
    for prompt, j, seed in job_samples(opts):
        stem = outputs.output_stem(
            prompt, opts.width, opts.height, opts.method_name, seed, settings, extra=kind.name_extra(opts)
        )

        def target(name: str, prompt=prompt, j=j, seed=seed, direct: Target | None = None) -> Target:
            path = out_dir / f"{name}{kind.suffix}"
            return Target(prompt, j, seed, path, frames_dir_of(path) if opts.save_frames else None, direct)

        found.append(target(stem, direct=target(f"{stem}-direct") if compare else None))
    return found


def check_targets(found: list[Target], overwrite: bool) -> None:
    """Outputs that collide with each other, or (without `overwrite`) with files or folders already there."""
    every = [t for target in found for t in (target, target.direct) if t is not None]
    outputs.check_targets([p for t in every for p in (t.path, outputs.sidecar_path(t.path))], overwrite)
    for folder in (t.frames_dir for t in every if t.frames_dir is not None):
        if folder.exists() and not overwrite:
            raise ScaleCrafterError(
                f"output folder {str(folder)!r} already exists; pass --overwrite or choose another --out"
            )


def run_job(opts: GenerateOptions, cache: ModelCache | None = None) -> list[Path]:
    """Generate every output of `opts` (images, or videos with `opts.video`); returns the paths of the
    images or videos written, each with a .json sidecar next to it. `cache` keeps the loaded
    pipeline for the next job (`scv ui`).

    All checks run first (options, names, output collisions, a writable folder, the model's
    configs, sizes, presets, the memory estimate), then the model loads, then each output is
    sampled with its own seed and written. With `skip_existing`, outputs whose files all exist are
    left as they are (and not counted).
    """
    validate_options(opts)
    todo = targets(opts)
    if opts.skip_existing:
        todo = outputs.skip_existing(todo, Target.files, kind_of(opts).noun)
    check_targets(todo, opts.overwrite)
    outputs.check_writable(Path(opts.out_dir))
    runner = Runner(opts, kind_of(opts), cache)
    runner.check()
    if not todo:
        return []
    runner.load()
    runner.check_loaded(opts)
    return runner.run(todo)


def load_model(opts: GenerateOptions, cache: ModelCache | None = None):
    """The pipeline of `opts`, checked and set up as a job would have it (from `cache` when it holds it)."""
    runner = Runner(opts, kind_of(opts), cache)
    runner.check_model()
    return runner.load()
