"""The sweep's record of finished items and of its settings.

Each process appends to its own JSON-lines file, `manifest/rank<r>.jsonl`, one line per finished
item, written with one `write` on an O_APPEND descriptor and fsync'ed; readers merge every file. A
line cut short by a crash is skipped when read, and the next writer starts on a fresh line, so a
killed process costs at most the item it was working on.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from ...engine.errors import ScaleCrafterError
from ...outputs import files as outputs

logger = logging.getLogger(__name__)

MANIFEST_DIR = "manifest"
SETTINGS_FILE = "sweep.json"


def manifest_files(out_dir: Path) -> list[Path]:
    return sorted((Path(out_dir) / MANIFEST_DIR).glob("*.jsonl"))


def is_sweep(folder: Path) -> bool:
    return (Path(folder) / SETTINGS_FILE).is_file()


def read_manifest(out_dir: Path) -> dict[str, dict[str, Any]]:
    """Finished items of the sweep in `out_dir`, by item key, merged over every process's file."""
    done: dict[str, dict[str, Any]] = {}
    for path in manifest_files(out_dir):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                key = entry["key"]
            except (ValueError, KeyError, TypeError):
                logger.warning("%s line %d is incomplete (an interrupted write); ignored", path, number)
                continue
            done.setdefault(key, entry)
    return done


class ManifestWriter:
    """Appends finished items to this process's manifest file."""

    def __init__(self, out_dir: Path, rank: int):
        folder = Path(out_dir) / MANIFEST_DIR
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"rank{rank:03d}.jsonl"
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
        size = os.fstat(self._fd).st_size
        if size and not _ends_with_newline(self.path, size):
            os.write(self._fd, b"\n")  # a crash cut the last line short: start a new one

    def record(self, entry: dict[str, Any]) -> None:
        os.write(self._fd, (json.dumps(entry, sort_keys=True) + "\n").encode("utf-8"))
        os.fsync(self._fd)

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> ManifestWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _ends_with_newline(path: Path, size: int) -> bool:
    with open(path, "rb") as f:
        f.seek(size - 1)
        return f.read(1) == b"\n"


def check_settings(out_dir: Path, settings: dict[str, Any], write: bool) -> bool:
    """The first run writes the sweep's settings; a later run into the same folder must match them
    (its grid may grow: more prompts at the end, seeds, methods or sizes). Returns whether this
    call created the settings file (`forget_unstarted` takes it back)."""
    path = Path(out_dir) / SETTINGS_FILE
    if not path.is_file():
        if write:
            outputs.atomic_write_text(path, json.dumps(settings, indent=2) + "\n")
        return write
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ScaleCrafterError(f"cannot read {path}: {exc}; pass another --out") from None
    for name, value in settings.items():
        if name == "prompts":
            continue
        if old.get(name) != value:
            raise ScaleCrafterError(
                f"{out_dir} holds a sweep with {name} {old.get(name)!r}, not {value!r}: rerun with the same "
                "settings to resume it, or pass another --out"
            )
    old_prompts, new_prompts = old.get("prompts", []), settings.get("prompts", [])
    for index, (was, now) in enumerate(zip(old_prompts, new_prompts)):
        if was != now:
            raise ScaleCrafterError(
                f"prompt {index + 1} of --prompts is {now!r} but this sweep's is {was!r} (seeds follow the "
                "prompt's line): keep the old prompts in order and add new ones at the end, or pass another --out"
            )
    if write and len(new_prompts) > len(old_prompts):
        outputs.atomic_write_text(path, json.dumps(dict(old, prompts=new_prompts), indent=2) + "\n")
    return False


def forget_unstarted(out_dir: Path) -> bool:
    """Take back the settings file of a sweep that failed before any item was recorded (a sampler
    that cannot run, a wrong model), so the folder does not stay locked to the failed settings;
    empty manifest files go too, the logs stay. A sweep with any manifest line or any item's file
    (method/WxH/name, a finished write) is kept. Returns whether the settings file was removed."""
    files = manifest_files(out_dir)
    if any(path.stat().st_size for path in files):
        return False
    if any(not p.name.startswith(".") for p in Path(out_dir).glob("*/*/*")):
        return False
    path = Path(out_dir) / SETTINGS_FILE
    if not path.is_file():
        return False
    path.unlink()
    for empty in files:
        empty.unlink(missing_ok=True)
    try:
        (Path(out_dir) / MANIFEST_DIR).rmdir()
    except OSError:  # not there, or not empty
        pass
    logger.info("no item was recorded: removed %s, so the folder takes other settings", path)
    return True
