"""Output files: deterministic names, no-overwrite checks, atomic writes and JSON sidecars.

Every output (PNG, MP4, sidecar, frame folder) is written to a temporary file or folder in the
target folder and moved into place with `os.replace` (`atomic_path`, `atomic_dir`), so an
interrupted run leaves finished files and nothing half-written. Temporaries are created with the
user's umask (files 0666 & ~umask, folders 0777 & ~umask), as a plain write would be. All targets
of a job are checked (names, collisions, a writable folder) before any model loads, so a refused
job writes nothing at all. A name holds a readable slug of the prompt, the size, the method, the
seed and a short hash of every setting that changes the output, so runs with other settings never
collide, and an interrupted batch can resume by skipping the items already written. No output
is written into a system folder (`SYSTEM_FOLDERS`), even by root.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import platform
import re
import secrets
import shutil
import tempfile
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from ..engine.errors import ScaleCrafterError

logger = logging.getLogger(__name__)

SIDECAR_SUFFIX = ".json"


def slugify(text: str, max_len: int = 48, max_bytes: int = 120) -> str:
    """A file-name-safe, lower-case slug of `text`: letters and digits of any script, dashes between.

    At most `max_len` characters and `max_bytes` UTF-8 bytes, so the whole name stays under the
    255-byte limit of common file systems.
    """
    text = unicodedata.normalize("NFKC", text).lower()
    kept = "".join(c if unicodedata.category(c)[0] in "LMN" else "-" for c in text)
    slug = re.sub(r"-+", "-", kept).strip("-")[:max_len]
    while len(slug.encode("utf-8")) > max_bytes:
        slug = slug[:-1]
    slug = slug.rstrip("-")
    return slug or "untitled"


def settings_id(settings: dict[str, Any]) -> str:
    """8 hex digits of SHA-256 over the settings (canonical JSON): equal settings, equal id."""
    text = json.dumps(settings, sort_keys=True, ensure_ascii=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


def output_stem(
    prompt: str, width: int, height: int, method: str, seed: int, settings: dict[str, Any], extra: str = ""
) -> str:
    """`<prompt-slug>-<W>x<H>-<method>[-<extra>]-seed<seed>-<settings id>`.

    The id hashes the prompt itself (slugs of different prompts can be equal) and `settings`
    (everything else that changes the output), so the same job always gets the same name and a
    job with any other setting gets another one.
    """
    parts = [slugify(prompt), f"{width}x{height}", method]
    if extra:
        parts.append(extra)
    parts.append(f"seed{seed}")
    parts.append(settings_id({"prompt": prompt, **settings}))
    return "-".join(parts)


def sidecar_path(path: Path) -> Path:
    return path.with_suffix(SIDECAR_SUFFIX)


# Folders of the operating system and its packages: no output goes there, even as root (who may
# write anywhere). /opt is not one (it often holds data too), nor /tmp, /home, /root or /srv. The
# folder scv runs in, the home folder and the temporary folder are never refused, so a project
# checked out under /usr/src or a service whose home is under /var/lib still writes its outputs.
SYSTEM_FOLDERS = (
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/proc",
    "/run",
    "/sbin",
    "/sys",
    "/usr",
    "/var/lib",
    "/var/log",
)


def system_folder(path: Path) -> str | None:
    """The system folder `path` lies in (symbolic links followed; "/" itself counts), or None."""
    resolved = Path(os.path.abspath(Path(path).expanduser())).resolve()
    for own in (Path.cwd(), Path.home(), Path(tempfile.gettempdir())):
        own = own.resolve()
        if own != Path(own.anchor) and resolved.is_relative_to(own):
            return None
    if resolved == Path(resolved.anchor):
        return str(resolved)
    return next((root for root in SYSTEM_FOLDERS if resolved.is_relative_to(root)), None)


def check_not_system(path: Path, flag: str = "--out", what: str | None = None) -> None:
    """Refuse an output at or under a system folder (`SYSTEM_FOLDERS`) in one line naming `what`
    (default: `flag` and the path) and `flag`, the option to change."""
    root = system_folder(path)
    if root is not None:
        raise ScaleCrafterError(
            f"{what or f'{flag} {str(path)!r}'} is in the system folder {root}, where scv writes nothing (even "
            f"as root): pass another {flag}, in a folder of your own, your home or /tmp"
        )


def prepare_out_dir(out_dir: Path) -> Path:
    """Create `out_dir` (and parents); a one-line error when it cannot be a folder."""
    out_dir = Path(out_dir)
    check_not_system(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ScaleCrafterError(f"output folder {str(out_dir)!r} exists and is not a folder; pass another --out")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ScaleCrafterError(f"cannot create output folder {str(out_dir)!r}: {exc.strerror or exc}") from None
    return out_dir


def check_targets(paths: Iterable[Path], overwrite: bool, flag: str = "--out") -> list[Path]:
    """Refuse a job whose outputs collide with each other or (without `overwrite`) with existing files;
    `flag` is the option that names them."""
    paths = [Path(p) for p in paths]
    for p in paths:
        check_not_system(p, flag, f"output {str(p)!r}")
    seen: set[Path] = set()
    for p in paths:
        if p in seen:
            raise ScaleCrafterError(f"two outputs of this job would both be written to {str(p)!r}")
        seen.add(p)
    for p in paths:
        if p.exists() and p.is_dir():
            raise ScaleCrafterError(f"output path {str(p)!r} is a folder; remove it or pass another {flag}")
    if not overwrite:
        existing = [p for p in paths if p.exists()]
        if existing:
            more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
            raise ScaleCrafterError(
                f"output {str(existing[0])!r} already exists{more}; pass --overwrite or choose another {flag}"
            )
    return paths


def path_argument(text: str, flag: str = "--out", what: str = "folder") -> Path:
    """The path a command-line `flag` names; an empty value is an error, not the current folder."""
    if not str(text).strip():
        here = f" (use {flag} . for the current folder)" if what == "folder" else ""
        raise ScaleCrafterError(f"{flag} is empty: name a {what}{here}")
    return Path(text).expanduser()


def check_writable(folder: Path, flag: str = "--out") -> None:
    """Fail now, not after sampling, when files cannot be written in `folder` (a system folder
    included: `check_not_system`).

    Creates the missing folders, writes and removes a temporary file, and removes the folders it
    created: a refused or failed job leaves no trace.
    """
    folder = Path(folder)
    check_not_system(folder, flag)
    missing: list[Path] = []
    created: list[Path] = []
    try:
        existing = folder
        while not existing.exists() and existing != existing.parent:
            missing.append(existing)
            existing = existing.parent
        if not existing.is_dir():
            raise ScaleCrafterError(
                f"{flag} {str(folder)!r}: {str(existing)!r} is a file, not a folder; pass another {flag}"
            )
        for path in reversed(missing):
            path.mkdir()
            created.append(path)
        _reserve_temp(folder / "write-probe").unlink()
    except OSError as exc:
        raise ScaleCrafterError(
            f"cannot write to output folder {str(folder)!r} ({exc.strerror or exc}); pass another {flag}"
        ) from None
    finally:
        for path in reversed(created):
            try:
                path.rmdir()
            except OSError:  # another process wrote into it meanwhile: keep it
                break


Item = TypeVar("Item")


def skip_existing(items: Sequence[Item], files: Callable[[Item], list[Path]], what: str = "outputs") -> list[Item]:
    """The items still to do under --skip-existing: an item is done when every file it writes exists.

    An item with only some of its files (another run's, or one stopped between two writes) is
    refused: finishing it would overwrite the files that are there.
    """
    todo = []
    for item in items:
        paths = [Path(p) for p in files(item)]
        present = [p for p in paths if p.exists()]
        if not present:
            todo.append(item)
        elif len(present) < len(paths):
            absent = next(p for p in paths if not p.exists())
            raise ScaleCrafterError(
                f"output {str(present[0])!r} exists but {str(absent)!r} does not, so --skip-existing cannot tell "
                "whether that item is finished; remove it or pass --overwrite"
            )
    if len(todo) < len(items):
        logger.warning(
            "%d of %d %s exist already and are skipped (--skip-existing)", len(items) - len(todo), len(items), what
        )
    return todo


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
    """Installed versions of the packages that decide what a sidecar's output looks like (read once per
    process: every output's sidecar records them)."""
    return dict(_versions(tuple(packages)))


@functools.cache
def _versions(packages: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    out: dict[str, str] = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = _module_version(name)
    return tuple(out.items())


def _module_version(name: str) -> str:
    try:
        module = __import__(name)
    except ImportError:
        return "not installed"
    return str(getattr(module, "__version__", "unknown"))
