"""Which images `scv eval` reads and how they are grouped: by the sweep's manifest when the folder
holds a sweep, else by the JSON sidecar next to each image (method, width, height, model)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import ScaleCrafterError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


@dataclass(frozen=True)
class Generated:
    path: Path
    method: str
    width: int
    height: int
    model: str | None = None
    base: bool = False  # generated at the model's base size (the FID_b reference)
    base_size: tuple[int, int] | None = None  # the model's base (width, height), when recorded


def list_images(folder: Path, what: str) -> list[Path]:
    """Image files under `folder` (recursively, sorted), skipping dot-names (interrupted writes)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ScaleCrafterError(f"{what} {str(folder)!r} is not a folder")
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    if not paths:
        raise ScaleCrafterError(f"{what} {str(folder)!r} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return paths


def load_rgb(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except OSError as exc:
        raise ScaleCrafterError(f"cannot read image {str(path)!r}: {exc}") from None


def find_generated(folder: Path) -> list[Generated]:
    from ..sweep.manifest import is_sweep

    return _from_sweep(Path(folder)) if is_sweep(folder) else _from_sidecars(Path(folder))


def _from_sweep(folder: Path) -> list[Generated]:
    from ..sweep.manifest import SETTINGS_FILE, read_manifest

    settings = json.loads((folder / SETTINGS_FILE).read_text(encoding="utf-8"))
    if settings.get("video"):
        raise ScaleCrafterError(f"{folder} is a video sweep: scv eval scores images (video metrics come later)")
    entries = sorted(read_manifest(folder).values(), key=lambda e: e["path"])
    if not entries:
        raise ScaleCrafterError(f"the sweep in {folder} has no finished items yet")
    out = []
    for e in entries:
        side = _read_sidecar((folder / e["path"]).with_suffix(".json")) or {}
        base_size = tuple(side["base_size"]) if side.get("base_size") else None
        out.append(Generated(folder / e["path"], e["method"], int(e["width"]), int(e["height"]),
                             settings.get("model"), bool(e.get("base")), base_size))
    return out


def _from_sidecars(folder: Path) -> list[Generated]:
    out, missing = [], []
    for path in list_images(folder, "--generated"):
        side = _read_sidecar(path.with_suffix(".json"))
        if side is None or not {"method", "width", "height"} <= side.keys():
            missing.append(path)
            continue
        base_size = tuple(side["base_size"]) if side.get("base_size") else None
        out.append(Generated(path, str(side["method"]), int(side["width"]), int(side["height"]),
                             side.get("model"), bool(side.get("base", False)), base_size))
    if missing:
        logger.warning("%d image(s) in %s have no sidecar with method, width and height (e.g. %s); skipped",
                       len(missing), folder, missing[0].name)
    if not out:
        raise ScaleCrafterError(f"no image in {str(folder)!r} has a sidecar (.json) with its method and size: "
                                "pass a folder written by `scv generate` or `scv sweep`")
    return out


def _read_sidecar(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
