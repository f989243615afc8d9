"""`scv eval`: per method and size, FID/KID against real images (r), against the model's base-size
generations (b) and on random full-resolution crops (c), plus the shapes demo's structure metrics.

Videos (MP4) are scored per frame for FID/KID (every frame of every clip is one image of the set;
n counts clips, `frames` the images) and, against the shapes data, per clip with the video demo's
metrics: consistency and motion (motion_ratio relative to the same model's base-size clips).

Images go through clean-fid's resize to 299 px and the chosen feature extractor once per set; the
crop metrics take `crops` random crop_size x crop_size windows of every image at its full resolution
(no downscaling first; crop_size defaults to the model's base size) from the generated and from the
reference images alike, each window then resized to 299 as above.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...engine.errors import ScaleCrafterError
from . import features as feat
from .inputs import (
    Generated,
    check_recorded_size,
    find_generated,
    frames_source,
    list_images,
    load_frames,
)
from .metrics import fid, kid
from .resize import clean_resize, random_crops

logger = logging.getLogger(__name__)

METRICS = ("fid_r", "kid_r", "fid_b", "kid_b", "fid_c", "kid_c")


@dataclass
class EvalConfig:
    generated: Path
    reference: Path | None = None  # real images
    reference_shapes: bool = False  # the shapes data set drawn at each row's size
    base: Path | None = None  # base-size generations (default: the sweep's base items)
    crops: int = 0  # random full-resolution crops per image for FID_c/KID_c (0: off)
    crop_size: int | None = None  # default: the model's base size
    features: str = "inception"
    inception_weights: Path | None = None
    num_reference: int = 500  # shapes references per size
    seed: int = 0
    batch: int = 32
    device: str = "cpu"


def evaluate(cfg: EvalConfig, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """{"rows": [...], "meta": {...}}; rows sorted by model, pixel count, method."""
    if cfg.reference is not None and cfg.reference_shapes:
        raise ScaleCrafterError("pass --reference DIR or --reference-shapes, not both")
    if cfg.crops < 0 or cfg.num_reference < 2:
        raise ScaleCrafterError("--crops must be >= 0 and --num-reference >= 2")
    if cfg.crops and cfg.reference is None and not cfg.reference_shapes:
        raise ScaleCrafterError(
            "--crops compares crops with crops of real images: pass --reference DIR or --reference-shapes"
        )
    generated = find_generated(cfg.generated)
    extractor = feat.build_extractor(cfg.features, cfg.inception_weights, cfg.seed)
    scorer = _Scorer(extractor, cfg, progress)

    groups: dict[tuple, list[Generated]] = {}
    for g in generated:
        groups.setdefault((g.model, g.method, g.width, g.height, g.video), []).append(g)
    base_sets = _base_sets(cfg, generated)
    logger.info(
        "%d generated images in %d groups; %d base-size sets; %s features",
        len(generated),
        len(groups),
        len(base_sets),
        extractor.name,
    )
    crop_size = (cfg.crop_size or _default_crop_size(generated, base_sets)) if cfg.crops else None

    real_full = real_crops = None
    if cfg.reference is not None:
        real_paths = list_images(cfg.reference, "--reference", videos=True)
        real_full = scorer.full(_load(real_paths))
        if cfg.crops:
            real_crops = scorer.crops(_load(real_paths), crop_size, skip_small=True)
    base_feats = {key: scorer.full(_load(items)) for key, items in base_sets.items()}
    shapes_cache: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor | None]] = {}

    rows = []
    for (model, method, width, height, video), items in sorted(groups.items(), key=lambda kv: _order(kv[0])):
        row: dict[str, Any] = {
            "model": model,
            "method": method,
            "res": f"{width}x{height}",
            "width": width,
            "height": height,
            "n": len(items),
            "base": all(g.base for g in items),
        }
        if video:
            row["video"] = True
        gen_full = scorer.full(_load(items))
        if video:
            row["frames"] = len(gen_full)
            sources = sorted({frames_source(g.path) for g in items})
            row["frames_from"] = sources[0] if len(sources) == 1 else "mixed"
        with_crops = cfg.crops and (cfg.reference is not None or cfg.reference_shapes)
        gen_crops = scorer.crops(_load(items), crop_size) if with_crops else None
        if cfg.reference_shapes:
            if (width, height) not in shapes_cache:
                from .reference import shapes_reference

                ref = shapes_reference(cfg.num_reference, width, height, cfg.seed)
                shapes_cache[(width, height)] = (scorer.full(ref), scorer.crops(ref, crop_size) if cfg.crops else None)
            real_full, real_crops = shapes_cache[(width, height)]
        row.update(_pair("r", real_full, gen_full, cfg.seed))
        base = base_feats.get((model, video), base_feats.get(None))
        row.update(_pair("b", None if row["base"] else base, gen_full, cfg.seed))
        row.update(_pair("c", real_crops, gen_crops, cfg.seed))
        if cfg.reference_shapes:
            row.update(_clip_structure(items, width, height) if video else _structure(items, width, height))
        rows.append(row)
    _relative_to_base(rows)
    meta = {
        "features": extractor.name,
        "features_note": extractor.note,
        "reference": "shapes data set drawn at each size"
        if cfg.reference_shapes
        else (str(cfg.reference) if cfg.reference else None),
        "num_reference": cfg.num_reference if cfg.reference_shapes else None,
        "crops_per_image": cfg.crops,
        "crop_size": crop_size,
        "resize": "clean-fid (PIL bicubic, float) to 299",
        "seed": cfg.seed,
        "generated": str(cfg.generated),
    }
    return {"rows": rows, "meta": meta}


def _pair(tag: str, ref: torch.Tensor | None, gen: torch.Tensor | None, seed: int) -> dict[str, float | None]:
    if ref is None or gen is None:
        return {f"fid_{tag}": None, f"kid_{tag}": None, f"kid_{tag}_std": None}
    k = kid(ref, gen, seed=seed)
    return {f"fid_{tag}": fid(ref, gen), f"kid_{tag}": k[0] if k else None, f"kid_{tag}_std": k[1] if k else None}


def _order(key: tuple) -> tuple:
    model, method, width, height, video = key
    from ..sweep.grid import METHODS

    rank = METHODS.index(method) if method in METHODS else len(METHODS)
    return (str(model), video, width * height, width, rank, method)


def _load(items: Iterable[Generated | Path]) -> Iterator[np.ndarray]:
    """Every image, and every frame of every video, one at a time (each the size recorded for it)."""
    for g in items:
        frames = load_frames(g.path if isinstance(g, Generated) else g)
        if isinstance(g, Generated):
            check_recorded_size(g, frames.shape[2], frames.shape[1])
        yield from frames


def _base_sets(cfg: EvalConfig, generated: list[Generated]) -> dict[tuple | None, list]:
    """Base-size generations per (model, video) (None: one set for every row, from --base)."""
    if cfg.base is not None:
        return {None: [Generated(p, "direct", 0, 0) for p in list_images(cfg.base, "--base", videos=True)]}
    sets: dict[tuple | None, list] = {}
    for g in generated:
        if g.base:
            sets.setdefault((g.model, g.video), []).append(g)
    return sets


def _default_crop_size(generated: list[Generated], base_sets: dict) -> int:
    sizes = [min(g.base_size) for g in generated if g.base_size]
    sizes += [min(g.width, g.height) for items in base_sets.values() for g in items if g.width]
    if not sizes:
        raise ScaleCrafterError(
            "--crops needs --crop-size PIXELS here (the sidecars do not record the model's base size)"
        )
    return min(sizes)


class _Scorer:
    """Clean-resize and extract features in batches, one image in memory at a time per batch slot."""

    def __init__(self, extractor, cfg: EvalConfig, progress: Callable[[int], None] | None):
        self.extractor, self.cfg, self.progress = extractor, cfg, progress

    def _features(self, resized: Iterable[np.ndarray]) -> torch.Tensor:
        out, batch = [], []
        for image in resized:
            batch.append(image)
            if len(batch) == self.cfg.batch:
                out.append(feat.extract(self.extractor, batch, len(batch), self.cfg.device, self.progress))
                batch = []
        if batch:
            out.append(feat.extract(self.extractor, batch, len(batch), self.cfg.device, self.progress))
        return torch.cat(out) if out else torch.zeros(0, int(self.extractor.num_features), dtype=torch.float64)

    def full(self, images: Iterable[np.ndarray]) -> torch.Tensor:
        return self._features(clean_resize(im) for im in images)

    def crops(self, images: Iterable[np.ndarray], size: int, skip_small: bool = False) -> torch.Tensor | None:
        def windows():
            for index, image in enumerate(images):
                if skip_small and min(image.shape[:2]) < size:
                    continue
                rng = np.random.default_rng([self.cfg.seed, index])
                try:
                    yield from (clean_resize(c) for c in random_crops(image, size, self.cfg.crops, rng))
                except ValueError as exc:
                    raise ScaleCrafterError(f"--crop-size {size}: {exc}") from None

        feats = self._features(windows())
        return feats if len(feats) else None


def _structure(items: list[Generated], width: int, height: int) -> dict[str, Any]:
    from ...models.shapes.data import IMAGE_SIZE
    from ...models.shapes.metrics import summarize

    images = [load_frames(g.path)[0].astype(np.float32) / 255.0 for g in items]
    summary = summarize(images, min(width, height) / IMAGE_SIZE)
    return {k: summary[k] for k in ("single", "repetition", "mean_objects", "bg_noise")}


def _clip_structure(items: list[Generated], width: int, height: int) -> dict[str, Any]:
    """The video demo's per-clip metrics; class_match when every clip's prompt is a class name."""
    from ...models.shapes.data import CLASS_NAMES, IMAGE_SIZE
    from ...models.shapes.video_metrics import summarize_clips

    clips = [load_frames(g.path).astype(np.float32) / 255.0 for g in items]
    prompts = [g.prompt for g in items]
    summary = summarize_clips(
        clips, min(width, height) / IMAGE_SIZE, prompts if all(p in CLASS_NAMES for p in prompts) else None
    )
    keys = ("single", "repetition", "consistent", "motion", "bg_noise", "bg_change", "color_change", "class_match")
    return {k: _finite_or_none(summary[k]) for k in keys if k in summary}


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None  # JSON has no NaN


def _relative_to_base(rows: list[dict[str, Any]]) -> None:
    """The demo's relative scores, against the same model's base-size rows of the same kind (image
    or video): "clean" (background noise) and, for videos, "motion_ratio" (motion in base pixels)."""
    from ...models.shapes.metrics import cleanliness
    from ...models.shapes.video_metrics import motion_ratio

    for row in rows:
        if "bg_noise" not in row:
            continue
        base = [
            r
            for r in rows
            if r["base"]
            and r["model"] == row["model"]
            and "bg_noise" in r
            and r.get("video", False) == row.get("video", False)
        ]
        row["clean"] = (
            cleanliness(row["bg_noise"], base[0]["bg_noise"])
            if base and row["bg_noise"] is not None and base[0]["bg_noise"] is not None
            else None
        )
        if row.get("video"):
            ratio = (
                motion_ratio(row["motion"], base[0]["motion"])
                if (base and row["motion"] is not None and base[0]["motion"] is not None)
                else float("nan")
            )
            row["motion_ratio"] = _finite_or_none(ratio)
