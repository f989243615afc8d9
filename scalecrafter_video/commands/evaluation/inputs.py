"""Which images and videos `scv eval` reads and how they are grouped: by the sweep's manifest when
the folder holds a sweep, else by the JSON sidecar next to each file (method, width, height, model).
A video (MP4) counts as its frames for the image metrics and as one clip for the video metrics."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ...engine.errors import ScaleCrafterError
from ...outputs.media import frames_dir_of

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
VIDEO_SUFFIXES = (".mp4",)


@dataclass(frozen=True)
class Generated:
    path: Path
    method: str
    width: int
    height: int
    model: str | None = None
    base: bool = False  # generated at the model's base size (the FID_b reference)
    base_size: tuple[int, int] | None = None  # the model's base (width, height), when recorded
    prompt: str | None = None
    recorded_by: str = "its sidecar"  # what says its method and size: its sidecar or the sweep's manifest

    @property
    def video(self) -> bool:
        return self.path.suffix.lower() in VIDEO_SUFFIXES


def list_images(folder: Path, what: str, videos: bool = False) -> list[Path]:
    """Image files (and with `videos`, MP4s) under `folder` (recursively, sorted), skipping dot-names
    (interrupted writes)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ScaleCrafterError(f"{what} {str(folder)!r} is not a folder")
    suffixes = IMAGE_SUFFIXES + (VIDEO_SUFFIXES if videos else ())
    paths = sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in suffixes
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    if not paths:
        raise ScaleCrafterError(
            f"{what} {str(folder)!r} holds no {'images or videos' if videos else 'images'} ({', '.join(suffixes)})"
        )
    return paths


def load_rgb(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except OSError as exc:
        raise ScaleCrafterError(f"cannot read image {str(path)!r}: {exc}") from None


def frames_source(path: Path) -> str:
    """Where a video's frames are read from: "png" (the lossless `--save-frames` folder next to it,
    preferred) or "mp4" (decoded; H.264 4:2:0 blurs colour edges, which matters for small clips)."""
    folder = frames_dir_of(path)
    return "png" if folder.is_dir() and any(folder.glob("frame_*.png")) else "mp4"


def load_frames(path: Path) -> np.ndarray:
    """uint8 (frames, H, W, 3): a video's frames (lossless PNG frames when saved), or an image as a
    one-frame clip."""
    if Path(path).suffix.lower() not in VIDEO_SUFFIXES:
        return load_rgb(path)[None]
    from ...outputs.media import read_png_frames, read_video

    try:
        frames = read_png_frames(frames_dir_of(path)) if frames_source(path) == "png" else read_video(path)
    except Exception as exc:  # noqa: BLE001 - decord raises its own error types for unreadable files
        raise ScaleCrafterError(
            f"cannot read video {str(path)!r}: {str(exc).splitlines()[0] if str(exc) else exc}"
        ) from None
    if frames.ndim != 4 or not len(frames):
        raise ScaleCrafterError(f"video {str(path)!r} has no frames")
    return frames


def find_generated(folder: Path) -> list[Generated]:
    """Every generated image and video of `folder` with its method and size; an image whose pixels
    disagree with the size recorded for it is refused now (a video's when its frames are read)."""
    from ..sweep.manifest import is_sweep

    found = _from_sweep(Path(folder)) if is_sweep(folder) else _from_sidecars(Path(folder))
    for g in found:
        if not g.video:
            try:
                with Image.open(g.path) as im:
                    width, height = im.size
            except OSError:
                continue  # unreadable: load_rgb says so when it is read
            check_recorded_size(g, width, height)
    return found


def check_recorded_size(g: Generated, width: int, height: int) -> None:
    """Refuse an image or video whose pixels are not the size recorded for it (rows group by that
    size and the shapes references are drawn at it). Sizes are not recorded for --base files. An
    MP4 may be padded to even sides."""
    if not g.width:
        return
    padded = (g.width + g.width % 2, g.height + g.height % 2)
    if (width, height) != (g.width, g.height) and not (g.video and (width, height) == padded):
        raise ScaleCrafterError(
            f"{str(g.path)!r} is {width}x{height} pixels but {g.recorded_by} says {g.width}x{g.height}: "
            "regenerate it, or move it (and its sidecar) out of --generated"
        )


def _from_sweep(folder: Path) -> list[Generated]:
    from ..sweep.manifest import SETTINGS_FILE, read_manifest

    settings = json.loads((folder / SETTINGS_FILE).read_text(encoding="utf-8"))
    entries = sorted(read_manifest(folder).values(), key=lambda e: e["path"])
    if not entries:
        raise ScaleCrafterError(f"the sweep in {folder} has no finished items yet")
    out = []
    for e in entries:
        side = _read_sidecar((folder / e["path"]).with_suffix(".json")) or {}
        base_size = tuple(side["base_size"]) if side.get("base_size") else None
        out.append(
            Generated(
                folder / e["path"],
                e["method"],
                int(e["width"]),
                int(e["height"]),
                settings.get("model"),
                bool(e.get("base")),
                base_size,
                e.get("prompt"),
                recorded_by="the sweep's manifest",
            )
        )
    return out


def _from_sidecars(folder: Path) -> list[Generated]:
    out, missing = [], []
    paths = list_images(folder, "--generated", videos=True)
    frame_dirs = {frames_dir_of(p) for p in paths if p.suffix.lower() in VIDEO_SUFFIXES}
    for path in paths:
        if path.parent in frame_dirs:
            continue  # a video's saved frames: read with the video
        side = _read_sidecar(path.with_suffix(".json"))
        if side is None or not {"method", "width", "height"} <= side.keys():
            missing.append(path)
            continue
        base_size = tuple(side["base_size"]) if side.get("base_size") else None
        out.append(
            Generated(
                path,
                str(side["method"]),
                int(side["width"]),
                int(side["height"]),
                side.get("model"),
                bool(side.get("base", False)),
                base_size,
                side.get("prompt"),
            )
        )
    if missing:
        logger.warning(
            "%d file(s) in %s have no sidecar with method, width and height (e.g. %s); skipped",
            len(missing),
            folder,
            missing[0].name,
        )
    if not out:
        raise ScaleCrafterError(
            f"no image or video in {str(folder)!r} has a sidecar (.json) with its method and size: "
            "pass a folder written by `scv generate` or `scv sweep`"
        )
    return out


def _read_sidecar(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
