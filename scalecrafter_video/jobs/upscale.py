"""`scv upscale`: the user's own image or clip as the first stage of a cascade (`jobs.cascade`), up
to the target size in stages of at most 2x per side, through the one job runner: checked, named,
written atomically and resumable as `scv generate`'s outputs are.

The order: the input is probed (it exists, is a PNG/JPEG image or a clip decord reads, and its
bytes are hashed); the output's name (the input's name and hash, the size, the seed, every
setting), collisions and a writable folder; the model's config files and what it takes (a class
prompt, the clip's frame count); the input's size fitted to the model's multiple (the nearest
valid size, with a notice); the stages' plans and the memory estimate at the target size; the
input decoded; only then the weights. A clip keeps its frame count and fps; its audio is dropped,
with a notice.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..engine.errors import ScaleCrafterError
from ..outputs import files as outputs
from .checks import size_multiple, validate_options
from .frames import as_frames, resize_frames
from .generate import check_targets, kind_of
from .loading import ModelCache
from .options import GenerateOptions
from .runner import Runner, Target

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm")


@dataclass(frozen=True)
class Probe:
    """What is known of an input file before it is decoded.

    Attributes:
        path: the file.
        video: a clip (else an image).
        size: (height, width) of its frames.
        frames: the frame count of a clip (None for an image).
        fps: a clip's frames per second (an int where it is whole; None for an image).
        audio: a clip's audio codec, None without audio.
        sha256: the hash of its bytes.
    """

    path: Path
    video: bool
    size: tuple[int, int]
    frames: int | None
    fps: float | int | None
    audio: str | None
    sha256: str


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def probe_input(text: str | Path) -> Probe:
    """Check an input file without decoding it: it exists, is readable, and is a PNG/JPEG image or a
    clip decord opens (with at least one frame).

    Args:
        text: the path as given.

    Returns:
        The `Probe`.

    Raises:
        ScaleCrafterError: one line naming the file and what is wrong with it.
    """
    path = outputs.path_argument(str(text), "INPUT", "file")
    where = f"input {str(path)!r}"
    if not path.exists():
        raise ScaleCrafterError(f"{where} does not exist")
    if not path.is_file():
        raise ScaleCrafterError(f"{where} is not a file")
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES + VIDEO_SUFFIXES:
        raise ScaleCrafterError(
            f"{where} is neither an image ({', '.join(IMAGE_SUFFIXES)}) nor a clip ({', '.join(VIDEO_SUFFIXES)})"
        )
    try:
        sha256 = _sha256(path)
    except OSError as exc:
        raise ScaleCrafterError(f"cannot read {where}: {exc.strerror or exc}") from None
    if suffix in IMAGE_SUFFIXES:
        return _probe_image(path, where, sha256)
    return _probe_clip(path, where, sha256)


def _probe_image(path: Path, where: str, sha256: str) -> Probe:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.verify()
            width, height = im.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ScaleCrafterError(f"{where} is not a readable image ({exc})") from None
    return Probe(path, False, (height, width), None, None, None, sha256)


def _probe_clip(path: Path, where: str, sha256: str) -> Probe:
    try:
        import decord

        reader = decord.VideoReader(str(path), ctx=decord.cpu(0))
        count = len(reader)
        height, width = reader[0].shape[:2] if count else (0, 0)
        fps = float(reader.get_avg_fps())
    except Exception as exc:  # decord raises its own DECORDError (a RuntimeError) or worse on a broken file
        raise ScaleCrafterError(
            f"{where} is not a readable clip ({str(exc).splitlines()[0] if str(exc) else exc!r})"
        ) from None
    if count < 1:
        raise ScaleCrafterError(f"{where} holds no frames")
    if not math.isfinite(fps) or fps <= 0:
        raise ScaleCrafterError(f"{where} has no frame rate")
    fps = int(round(fps)) if abs(fps - round(fps)) < 1e-3 else round(fps, 3)
    return Probe(path, True, (int(height), int(width)), count, fps, _audio_codec(path), sha256)


def _audio_codec(path: Path) -> str | None:
    """The clip's audio codec, where ffmpeg finds an audio stream."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    try:
        meta = next(reader)
    except Exception:  # ffmpeg could not tell: decord read the frames, so the clip itself is fine
        return None
    finally:
        reader.close()
    return meta.get("audio_codec") or None


def fitted_size(size: tuple[int, int], multiple: int) -> tuple[int, int]:
    """The nearest (height, width) whose sides are multiples of `multiple` (at least one multiple)."""
    return tuple(max(multiple, round(side / multiple) * multiple) for side in size)


@dataclass
class Source:
    """An input file as the first stage of a cascade: `size` is the size it is sampled at (its own,
    or the nearest multiple the model takes); `load()` decodes it (before the weights load)."""

    probe: Probe
    size: tuple[int, int]
    _frames: torch.Tensor | None = field(default=None, repr=False)

    @property
    def frames(self) -> torch.Tensor:
        """(N, 3, H, W) floats in [0, 1] at `size`."""
        if self._frames is None:
            self.load()
        return self._frames

    def load(self) -> None:
        """Decode the file (all frames of a clip) and resize it to `size` where it differs."""
        probe = self.probe
        try:
            if probe.video:
                import decord

                reader = decord.VideoReader(str(probe.path), ctx=decord.cpu(0))
                frames = as_frames(reader.get_batch(list(range(len(reader)))).asnumpy())
            else:
                from PIL import Image

                with Image.open(probe.path) as im:
                    frames = as_frames(im.convert("RGB"))
        except Exception as exc:
            raise ScaleCrafterError(f"cannot decode input {str(probe.path)!r}: {exc}") from None
        self._frames = resize_frames(frames, self.size)

    def fields(self) -> dict[str, Any]:
        """What a sidecar records of the input."""
        probe = self.probe
        return {
            "path": str(probe.path),
            "sha256": probe.sha256,
            "size": [probe.size[1], probe.size[0]],
            "resized_to": [self.size[1], self.size[0]] if self.size != probe.size else None,
            "frames": probe.frames,
            "fps": probe.fps,
            "audio": f"dropped ({probe.audio})" if probe.audio else None,
        }


def upscale_target(opts: GenerateOptions, probe: Probe) -> Target:
    """The output of an upscale: `<input name>-<W>x<H>-upscale[-<F>f]-seed<seed>-<id>`, the id
    hashing the prompt, every setting and the input's bytes."""
    kind = kind_of(opts)
    prompt = opts.prompts[0]
    settings = {**opts.output_settings(), "upscale_prompt": prompt, "input_sha256": probe.sha256}
    stem = outputs.output_stem(
        probe.path.stem, opts.width, opts.height, "upscale", opts.seed, settings, extra=kind.name_extra(opts)
    )
    return Target(prompt, 0, opts.seed, Path(opts.out_dir) / f"{stem}{kind.suffix}")


def run_upscale(opts: GenerateOptions, probe: Probe, cache: ModelCache | None = None) -> list[Path]:
    """Upscale the probed input by the cascade of `opts` (`opts.cascade` on, one prompt, `video`,
    `frames` and `fps` as the input's); returns the path written (none where `skip_existing` found it).

    Args:
        opts: the job's options.
        probe: `probe_input` of the input file.
        cache: keep the loaded pipeline for the next job (`scv ui`).

    Returns:
        The paths of the images or clips written, each with its sidecar.

    Raises:
        ScaleCrafterError: any check, in the order of the module docstring.
    """
    if not opts.cascade or len(opts.prompts) != 1 or opts.video != probe.video:
        raise ScaleCrafterError("an upscale is a cascade of one prompt on an input of its own kind")
    if probe.audio:
        logger.warning("%s has an audio track (%s): the upscaled clip has none", probe.path, probe.audio)
    validate_options(opts)
    todo = [upscale_target(opts, probe)]
    if opts.skip_existing:
        todo = outputs.skip_existing(todo, Target.files, kind_of(opts).noun)
    check_targets(todo, opts.overwrite)
    outputs.check_writable(Path(opts.out_dir))
    runner = Runner(opts, kind_of(opts), cache)
    runner.check_model()
    multiple = runner.inspected.info.size_multiple or 8
    size = fitted_size(probe.size, multiple)
    if size != probe.size:
        logger.warning(
            "input %s is %dx%d, not a multiple of %d pixels per side as the model needs: resized to %dx%d",
            probe.path,
            probe.size[1],
            probe.size[0],
            multiple,
            size[1],
            size[0],
        )
    if opts.height <= size[0] and opts.width <= size[1]:
        raise ScaleCrafterError(
            f"--res {opts.width}x{opts.height} is no larger than the input ({size[1]}x{size[0]}): nothing to upscale"
        )
    runner.source = source = Source(probe, size)
    runner.check_job(opts)
    if not todo:
        return []
    source.load()
    runner.load()
    loaded_multiple = size_multiple(runner.loaded.pipe)
    if size[0] % loaded_multiple or size[1] % loaded_multiple:  # the config files could not tell before loading
        source.size = fitted_size(probe.size, loaded_multiple)
        logger.warning(
            "input %s resized to %dx%d: the model needs multiples of %d pixels per side",
            probe.path,
            source.size[1],
            source.size[0],
            loaded_multiple,
        )
        source.load()
    runner.check_loaded(opts)
    return runner.run(todo)
