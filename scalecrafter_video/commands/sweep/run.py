"""One process's part of a sweep: load the pipeline once, take a disjoint share of the unfinished
items, generate each through the job runner, write it (the image or video, then its sidecar) and record it in this
process's manifest. Run alone, or as N processes under `accelerate launch` (or torchrun)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ...engine.errors import ScaleCrafterError
from ...jobs.checks import validate_options
from ...jobs.generate import kind_of
from ...jobs.loading import resolve_device
from ...jobs.options import GenerateOptions
from ...jobs.runner import Runner, Target
from ...outputs import files as outputs
from ...outputs.media import frames_dir_of
from .grid import METHODS, SweepItem, build_grid
from .manifest import (
    ManifestWriter,
    check_settings,
    forget_unstarted,
    manifest_files,
    read_manifest,
)

logger = logging.getLogger(__name__)

CASCADE = "cascade"

LOG_DIR = "logs"


@dataclass
class SweepConfig:
    template: GenerateOptions  # model and sampling settings shared by every item
    prompts: list[str]
    seeds: int
    methods: list[str]
    sizes: list[tuple[int, int]]  # (width, height) in pixels
    out_dir: Path
    include_base: bool = False
    progress: bool = True

    def settings(self) -> dict[str, Any]:
        """What must not change between runs into one folder (it decides what each item looks like)."""
        t = self.template
        return {
            "model": t.model,
            "family": t.family,
            "video": t.video,
            "steps": t.steps,
            "guidance": t.guidance,
            "eta": t.eta,
            "scheduler": t.scheduler,
            "negative_prompt": t.negative_prompt,
            "dtype": t.dtype,
            "preset": t.preset,
            "ndcfg": t.ndcfg,
            "dispersion": t.dispersion,
            "progressive": t.progressive,
            "freeu": t.freeu,
            "frames": t.frames if t.video else None,
            "fps": t.fps if t.video else None,
            "motion_adapter": t.motion_adapter,
            **({"cascade": cascade_settings(t)} if CASCADE in self.methods else {}),
            "prompts": self.prompts,
        }


@dataclass
class SweepResult:
    rank: int
    processes: int
    total: int  # items in the grid
    finished_before: int  # already in the manifest when this run started
    generated: int = 0  # by this process
    adopted: int = 0  # complete files from an interrupted run, recorded without regenerating
    share: int = 0  # unfinished items given to this process
    out_dir: Path = field(default_factory=Path)


def validate(cfg: SweepConfig) -> None:
    if not cfg.prompts:
        raise ScaleCrafterError("no prompts: pass --prompts FILE (one prompt per line)")
    if cfg.seeds < 1:
        raise ScaleCrafterError(f"--seeds must be at least 1, got {cfg.seeds}")
    unknown = [m for m in cfg.methods if m not in METHODS]
    if unknown or not cfg.methods:
        raise ScaleCrafterError(
            f"unknown method {unknown[0] if unknown else '(none)'!r} in --methods: choose from {', '.join(METHODS)}"
        )
    if not cfg.sizes and not cfg.include_base:
        raise ScaleCrafterError("no sizes: pass --res WxH[,WxH...] and/or --base")
    for width, height in cfg.sizes or [(64, 64)]:  # sampling settings are checked with --base alone too
        for method in cfg.methods:
            validate_options(
                with_method(replace(cfg.template, prompts=cfg.prompts, width=width, height=height), method)
            )


def run_sweep(cfg: SweepConfig) -> SweepResult:
    """Generate this process's share of the unfinished items of `cfg`; returns what it did."""
    validate(cfg)
    device = resolve_device(cfg.template.device)
    state = _process_state(device)
    if device == "cuda" or (device.startswith("cuda") and state.num_processes > 1):
        device = str(state.device)
    rank, world = state.process_index, state.num_processes
    out_dir = Path(cfg.out_dir)
    if state.is_main_process:
        outputs.prepare_out_dir(out_dir)
    state.wait_for_everyone()
    with _process_log(out_dir, rank):
        logger.info(
            "sweep process %d of %d: pid %d on %s, device %s", rank, world, os.getpid(), socket.gethostname(), device
        )
        check_settings(out_dir, cfg.settings(), write=False)
        runner = load_runner(replace(cfg.template, prompts=cfg.prompts), device)
        height, width = runner.loaded.base
        base = (width, height)
        items = build_grid(cfg.prompts, cfg.seeds, cfg.methods, cfg.sizes, base, cfg.include_base)
        for width, height in dict.fromkeys((i.width, i.height) for i in items):
            method = "scalecrafter" if "scalecrafter" in cfg.methods and (width, height) != base else "direct"
            runner.check_loaded(replace(runner.opts, width=width, height=height, method=method))
            if CASCADE in cfg.methods and (width, height) != base:
                runner.check_loaded(with_method(replace(runner.opts, width=width, height=height), CASCADE))
        done = read_manifest(out_dir)
        pending = [i for i in items if i.key not in done]
        created = False
        if state.is_main_process:
            created = check_settings(out_dir, cfg.settings(), write=True)
        try:
            return _run_share(cfg, state, runner, items, pending, out_dir)
        except BaseException:
            # alone, a run that created the settings and recorded nothing takes them back (several
            # processes: the launcher does, once every process has stopped)
            if created and world == 1:
                forget_unstarted(out_dir)
            raise


def _run_share(
    cfg: SweepConfig, state, runner: Runner, items: list[SweepItem], pending: list[SweepItem], out_dir: Path
) -> SweepResult:
    """Generate and record this process's share of `pending`."""
    from tqdm.auto import tqdm

    rank, world = state.process_index, state.num_processes
    if state.is_main_process:
        _remove_stale_temps(out_dir)
    # every process has read the same manifest before any of them writes to it: equal `pending`
    state.wait_for_everyone()
    share = pending[rank::world]
    result = SweepResult(rank, world, len(items), len(items) - len(pending), share=len(share), out_dir=out_dir)
    logger.info("%d items, %d finished before, %d for this process", len(items), result.finished_before, len(share))
    bar = tqdm(
        total=len(items),
        initial=result.finished_before,
        desc="sweep",
        unit="item",
        disable=not (cfg.progress and state.is_main_process),
        dynamic_ncols=True,
    )
    counter = _ManifestCounter(out_dir)
    try:
        with ManifestWriter(out_dir, rank) as writer:
            for item in share:
                adopted = _do_item(item, runner, out_dir, writer, rank)
                result.adopted += adopted
                result.generated += not adopted
                bar.update(max(0, result.finished_before + counter.new_lines() - bar.n))
    finally:
        bar.close()
    logger.info("done: %d generated, %d adopted", result.generated, result.adopted)
    return result


def load_runner(template: GenerateOptions, device: str) -> Runner:
    """The job runner of the sweep's model, checked and loaded once for this process (quietly:
    the sweep shows one progress bar of its own)."""
    template = replace(template, device=device, progress=False)
    runner = Runner(template, kind_of(template))
    runner.check_model()
    runner.load()
    return runner


def item_options(template: GenerateOptions, item: SweepItem) -> GenerateOptions:
    """The options of one item: the sweep's, at the item's size, method and seed."""
    opts = replace(
        template,
        prompts=[item.prompt],
        width=item.width,
        height=item.height,
        seed=item.seed,
        num_per_prompt=1,
        progress=False,
    )
    return with_method(opts, item.method)


def with_method(opts: GenerateOptions, method: str) -> GenerateOptions:
    """`opts` sampled by a sweep method: a `scv generate` method, or "cascade" (ScaleCrafter's
    options apply to its full stage plan)."""
    if method == CASCADE:
        return replace(opts, method="scalecrafter", cascade=True)
    return replace(opts, method=method, cascade=False)


def cascade_settings(opts: GenerateOptions) -> dict[str, Any]:
    """The cascade settings a sweep with the cascade method records."""
    return {
        "restart": opts.restart,
        "skip_exponent": opts.skip_exponent,
        "stage_plan": opts.stage_plan,
        "color_fix": opts.color_fix,
    }


def _process_state(device: str):
    from accelerate import PartialState

    state = PartialState(cpu=not device.startswith("cuda"))
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched != state.num_processes:
        raise ScaleCrafterError(
            f"launched as {launched} processes but accelerate set up {state.num_processes} (device {device}): "
            "use `scv sweep --num-processes N`, or `accelerate launch --multi_gpu --num_processes N` "
            "(with --device cpu on CPUs)"
        )
    return state


def _do_item(item: SweepItem, runner: Runner, out_dir: Path, writer: ManifestWriter, rank: int) -> bool:
    """Generate and record one item; True when complete files were already there (adopted)."""
    rel = item.relpath(runner.kind.suffix)
    path = out_dir / rel
    side = outputs.sidecar_path(path)
    adopted = path.exists()
    if adopted:
        if not _sidecar_matches(side, item):
            raise ScaleCrafterError(
                f"{path} exists but is not this sweep's item {item.key} (no matching sidecar): "
                "move it away or pass another --out"
            )
        seconds = None
    else:
        opts = item_options(runner.opts, item)
        sample = runner.sample(opts, item.prompt, item.seed)
        meta = runner.sidecar(
            sample,
            item.prompt,
            item.seed,
            0,
            prompt_index=item.prompt_index,
            seed_index=item.seed_index,
            base=item.base,
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        frames_dir = frames_dir_of(path) if opts.save_frames else None
        runner.write(sample, Target(item.prompt, 0, item.seed, path, frames_dir), meta, overwrite=True)
        seconds = sample.seconds
        logger.info("%s -> %s (%.1fs)", item.key, rel, seconds)
    writer.record(
        {
            "key": item.key,
            "path": rel,
            "sidecar": str(Path(rel).with_suffix(".json")),
            "method": item.method,
            "width": item.width,
            "height": item.height,
            "base": item.base,
            "prompt": item.prompt,
            "prompt_index": item.prompt_index,
            "seed_index": item.seed_index,
            "seed": item.seed,
            "rank": rank,
            "seconds": seconds,
            "adopted": adopted,
        }
    )
    return adopted


def _sidecar_matches(side: Path, item: SweepItem) -> bool:
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    want = {
        "prompt": item.prompt,
        "seed": item.seed,
        "method": item.method,
        "width": item.width,
        "height": item.height,
    }
    return all(meta.get(k) == v for k, v in want.items())


def _remove_stale_temps(out_dir: Path) -> None:
    """Temporary files and frame folders a killed process left behind (dot-names next to the
    outputs; never results)."""
    for tmp in out_dir.glob("*/*/.*"):
        if tmp.is_file():
            logger.info("removing %s (left by an interrupted write)", tmp)
            tmp.unlink(missing_ok=True)
        elif tmp.is_dir() and tmp.name.endswith(".tmp"):
            logger.info("removing %s (left by an interrupted write)", tmp)
            shutil.rmtree(tmp, ignore_errors=True)


class _ManifestCounter:
    """Counts manifest lines written since it was created, reading only the new bytes of each file."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self.offsets = {p: p.stat().st_size for p in manifest_files(out_dir)}
        self.count = 0

    def new_lines(self) -> int:
        for path in manifest_files(self.out_dir):
            start = self.offsets.get(path, 0)
            with open(path, "rb") as f:
                f.seek(start)
                data = f.read()
            self.offsets[path] = start + len(data)
            self.count += data.count(b"\n")
        return self.count


@contextmanager
def _process_log(out_dir: Path, rank: int):
    """This process's log file, `logs/rank<r>.log` (appended): what it did, item by item."""
    folder = out_dir / LOG_DIR
    folder.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(folder / f"rank{rank:03d}.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    package = logging.getLogger("scalecrafter_video")
    old_level = package.level
    package.addHandler(handler)
    if package.getEffectiveLevel() > logging.INFO:
        package.setLevel(logging.INFO)
    try:
        yield
    except BaseException as exc:  # into the file only: the terminal gets the CLI's one-line error
        handler.handle(
            logger.makeRecord(
                logger.name, logging.ERROR, __file__, 0, "stopped: %s: %s", (type(exc).__name__, exc), None
            )
        )
        raise
    finally:
        package.setLevel(old_level)
        package.removeHandler(handler)
        handler.close()
