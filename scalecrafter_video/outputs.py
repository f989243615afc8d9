"""Output files: deterministic names, no-overwrite checks, atomic writes and JSON sidecars.

Every output (PNG, MP4, sidecar, frame folder) is written to a temporary file or folder in the
target folder and moved into place with `os.replace` (`atomic_path`, `atomic_dir`), so an
interrupted run leaves finished files and nothing half-written. Temporaries are created with the
user's umask (files 0666 & ~umask, folders 0777 & ~umask), as a plain write would be. All targets
of a job are checked before anything is generated, so a refused job writes nothing at all.
"""

from __future__ import annotations

import json
import os
import platform
import re
import secrets
import shutil
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

from .errors import ScaleCrafterError

SIDECAR_SUFFIX = ".json"


def slugify(text: str, max_len: int = 48) -> str:
    """A file-name-safe, lower-case slug of `text` (ASCII letters, digits and dashes)."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    slug = slug[:max_len].rstrip("-")
    return slug or "untitled"


def output_stem(prompt: str, width: int, height: int, method: str, seed: int, extra: str = "") -> str:
    """`<prompt-slug>-<W>x<H>-<method>[-<extra>]-seed<seed>`: the same job always gets the same name."""
    parts = [slugify(prompt), f"{width}x{height}", method]
    if extra:
        parts.append(extra)
    parts.append(f"seed{seed}")
    return "-".join(parts)


def sidecar_path(path: Path) -> Path:
    return path.with_suffix(SIDECAR_SUFFIX)


def prepare_out_dir(out_dir: Path) -> Path:
    """Create `out_dir` (and parents); a one-line error when it cannot be a folder."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ScaleCrafterError(f"output folder {str(out_dir)!r} exists and is not a folder; pass another --out")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ScaleCrafterError(f"cannot create output folder {str(out_dir)!r}: {exc.strerror or exc}") from None
    return out_dir


def check_targets(paths: Iterable[Path], overwrite: bool) -> list[Path]:
    """Refuse a job whose outputs collide with each other or (without `overwrite`) with existing files."""
    paths = [Path(p) for p in paths]
    seen: set[Path] = set()
    for p in paths:
        if p in seen:
            raise ScaleCrafterError(f"two outputs of this job would both be written to {str(p)!r}")
        seen.add(p)
    for p in paths:
        if p.exists() and p.is_dir():
            raise ScaleCrafterError(f"output path {str(p)!r} is a folder; remove it or pass another --out")
    if not overwrite:
        existing = [p for p in paths if p.exists()]
        if existing:
            more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
            raise ScaleCrafterError(
                f"output {str(existing[0])!r} already exists{more}; pass --overwrite or choose another --out"
            )
    return paths


@contextmanager
def atomic_path(path: Path):
    """Yield a temporary path next to `path` (same suffix); on success it replaces `path` atomically.

    On any error (including KeyboardInterrupt) the temporary file is removed and `path` is untouched.
    """
    path = Path(path)
    tmp = _reserve_temp(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_dir(path: Path, replace: bool = False):
    """Yield a new empty folder next to `path`; on success it becomes `path` (an existing `path` is
    replaced only when `replace`). On any error the temporary folder is removed, `path` untouched."""
    path = Path(path)
    tmp = _reserve_temp(path, folder=True)
    try:
        yield tmp
        if path.exists():
            if not replace:
                raise ScaleCrafterError(f"{path} exists; pass --overwrite to replace it or choose another --out")
            old = _reserve_temp(path, folder=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _reserve_temp(path: Path, folder: bool = False) -> Path:
    # os.open / os.mkdir with 0o666 / 0o777 keep the user's umask (mkstemp and mkdtemp force 0600 / 0700).
    while True:
        tmp = path.parent / f".{path.stem}.{secrets.token_hex(4)}.tmp{'' if folder else path.suffix}"
        try:
            if folder:
                os.mkdir(tmp, 0o777)
            else:
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp_path)` and move the result to `path` atomically."""
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def save_image(image, path: Path) -> Path:
    """Save a PIL image atomically (format from the suffix of `path`)."""
    fmt = Path(path).suffix.lstrip(".").upper().replace("JPG", "JPEG") or "PNG"
    return atomic_write(path, lambda tmp: image.save(tmp, format=fmt))


def write_sidecar(path: Path, meta: dict[str, Any]) -> Path:
    """Write `meta` as indented JSON to `path`'s sidecar (same stem, .json), atomically."""
    side = sidecar_path(Path(path))
    atomic_write_text(side, json.dumps(meta, indent=2, sort_keys=False, default=_json_default) + "\n")
    return side


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    return repr(obj)


def versions(packages: Sequence[str] = ("scalecrafter_video", "torch", "diffusers", "transformers")) -> dict[str, str]:
    """Installed versions of the packages that decide what a sidecar's output looks like."""
    out: dict[str, str] = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = _module_version(name)
    return out


def _module_version(name: str) -> str:
    try:
        module = __import__(name)
    except ImportError:
        return "not installed"
    return str(getattr(module, "__version__", "unknown"))
