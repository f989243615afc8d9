"""Finding and loading a model, for the image and video front ends alike.

A `ModelRef` says where a --model value points (a built-in model, a local diffusers folder or a
hub repository) and its family where something names it. Config files are read from the folder
or the local Hugging Face cache without touching the network; a model missing offline (or with
the hub out of reach within seconds) is a one-line `ScaleCrafterError` that says how to get it.
Weights load through `from_pretrained`, whose failures are one line too.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections import OrderedDict
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from huggingface_hub import constants, try_to_load_from_cache

from ..engine.errors import ScaleCrafterError
from ..engine.families import FAMILIES, size_multiple
from ..models.builtin import BuiltinModel
from ..models.diffusers_warnings import quiet_empty_fp32_warning
from .options import DTYPES

logger = logging.getLogger(__name__)

HUB_PROBE_TIMEOUT_S = 3.0
_LOAD_ERRORS = (OSError, ValueError, TypeError, KeyError, AttributeError, ImportError, RuntimeError)


@dataclass(frozen=True)
class ModelRef:
    """Where a --model value points, and its family where --family, a built-in model or a known
    hub id names it (None: the UNet's architecture decides)."""

    name: str  # what the user passed
    kind: str  # "local" | "hub" | a built-in model's kind ("tiny")
    location: str  # folder path, repo id or built-in name
    family: str | None = None
    builtin: BuiltinModel | None = field(default=None, compare=False, repr=False)

    def describe(self) -> str:
        return f"model {self.name!r}" + (f" ({self.location})" if self.location != self.name else "")


@dataclass(frozen=True)
class ModelInfo:
    """What is known about a model before its weights load (read from small config files)."""

    ref: ModelRef
    index: dict[str, Any]  # model_index.json ({} when not cached yet, or built in)
    unet_config: dict[str, Any] | None
    vae_config: dict[str, Any] | None
    vae_scale_factor: int = 8
    revision: str | None = None  # commit of the cached hub snapshot

    @property
    def size_multiple(self) -> int | None:
        """Pixels per side the model needs: from its UNet config, else its named family's; None
        when neither is known before loading."""
        channels = (self.unet_config or {}).get("block_out_channels")
        if channels:
            return size_multiple(len(channels), self.vae_scale_factor)
        family = FAMILIES.get(self.ref.family)
        return family.size_multiple if family else None

    @property
    def base(self) -> tuple[int, int] | None:
        """(height, width) in pixels the model was trained at, where known before loading."""
        return model_base(self.ref, self.unet_config, self.vae_scale_factor)

    @property
    def configs_known(self) -> bool:
        """The UNet's and the VAE's configs are read (a built-in pixel-space model has no VAE)."""
        return bool(self.unet_config and (self.vae_config or self.ref.builtin is not None))


@dataclass
class LoadedModel:
    """A loaded pipeline and what the front ends record about it."""

    pipe: Any
    ref: ModelRef
    family: str  # whose sampling defaults apply (guidance, FreeU, VAE tiling)
    revision: str | None = None
    motion_adapter: str | None = None  # video: the adapter's id or folder, or how it came
    max_frames: int | None = None  # video: the most frames the temporal layers take

    @property
    def base(self) -> tuple[int, int]:
        """(height, width) in pixels the model was trained at."""
        pipe = self.pipe
        return model_base(self.ref, dict(pipe.unet.config), int(getattr(pipe, "vae_scale_factor", 8)))


class ModelCache:
    """Loaded pipelines kept between jobs (`scv ui`): at most `size`, the least recently used one
    dropped before another loads, so memory holds `size` models at the most."""

    def __init__(self, size: int = 2):
        self.size = size
        self._models: OrderedDict[tuple, LoadedModel] = OrderedDict()

    def get(self, key: tuple, load: Callable[[], LoadedModel]) -> LoadedModel:
        """The model cached under `key`, or `load()` cached under it."""
        if key in self._models:
            self._models.move_to_end(key)
            return self._models[key]
        while self._models and len(self._models) >= self.size:
            dropped, _ = self._models.popitem(last=False)
            logger.info("dropped %s from the model cache", dropped[0])
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        loaded = self._models[key] = load()
        return loaded

    def __len__(self) -> int:
        return len(self._models)


def model_base(ref: ModelRef, unet_config: dict[str, Any] | None, vae_scale_factor: int) -> tuple[int, int] | None:
    """(height, width) in pixels the model was trained at: a built-in model's own; a named family's
    (--family, a known hub id: Zeroscope was tuned at 576x320, which a square sample_size cannot
    say); else its UNet's sample_size times the VAE factor, so fine-tunes at other sizes get their
    own base. None when nothing is known yet."""
    if ref.builtin is not None:
        unet_config, vae_scale_factor = ref.builtin.unet_config, ref.builtin.vae_scale_factor
    elif ref.family in FAMILIES:
        fam = FAMILIES[ref.family]
        return fam.base_height, fam.base_width
    sample = (unet_config or {}).get("sample_size")
    if sample is None:
        return None
    h, w = (sample, sample) if isinstance(sample, int) else tuple(sample)
    return h * vae_scale_factor, w * vae_scale_factor


# ---- the hub, local folders, config files ----------------------------------------------------
def is_local_path(location: str) -> bool:
    """A folder path rather than a hub id: it exists, or it reads like a path (./x, /x, ~/x, a/b/c)."""
    return (
        Path(location).expanduser().exists()
        or location.startswith((".", "/", "~"))
        or location.count("/") > 1
        or "\\" in location
    )


def hub_offline() -> bool:
    env = os.environ.get("HF_HUB_OFFLINE", "").strip().upper()
    return constants.HF_HUB_OFFLINE or env in {"1", "ON", "YES", "TRUE"}


def hub_reachable(timeout: float = HUB_PROBE_TIMEOUT_S) -> bool:
    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def download_hint(repo: str, flag: str = "--model") -> str:
    """How to get a missing hub repository (a model or a motion adapter)."""
    return (
        f"run `hf download {repo}` on a connected machine and copy its ~/.cache/huggingface here, "
        f"or pass {flag} /path/to/a/local/diffusers/folder"
    )


def find_config(location: str, filename: str, what: str, *, local: bool, flag: str = "--model") -> Path | None:
    """`filename` of a local folder, or of a hub repository in the local Hugging Face cache,
    without any network access. A folder must exist and hold it. A hub file not cached: offline
    (HF_HUB_OFFLINE set, or the hub unreachable within seconds) a one-line error naming `what`
    and how to get it; online None (it downloads with the weights)."""
    if local:
        folder = Path(location).expanduser()
        if not folder.exists():
            raise ScaleCrafterError(f"{what}: folder does not exist")
        if folder.is_file():
            raise ScaleCrafterError(
                f"{what} is a single file; pass a diffusers folder (with {filename}), "
                "e.g. one saved by `pipe.save_pretrained(DIR)`"
            )
        path = folder / filename
        if not path.is_file():
            raise ScaleCrafterError(f"{what} has no {filename}: it is not a diffusers folder")
        return path
    cached = try_to_load_from_cache(location, filename)
    if isinstance(cached, str):
        return Path(cached)
    if hub_offline():
        reason = "HF_HUB_OFFLINE is set"
    elif not hub_reachable():
        reason = "the hub is unreachable"
    else:
        return None
    raise ScaleCrafterError(
        f"{what} is not in the local Hugging Face cache and {reason}: {download_hint(location, flag)}"
    )


def read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ScaleCrafterError(f"{what}: cannot read {Path(path).name}: {exc}") from None


def _component_config(ref: ModelRef, folder: str, component: str) -> dict[str, Any] | None:
    """`component/config.json` from the folder or the cache; None where it is not here (yet)."""
    if folder:
        path = Path(folder) / component / "config.json"
        return read_json(path, ref.describe()) if path.is_file() else None
    cached = try_to_load_from_cache(ref.location, f"{component}/config.json")
    return read_json(Path(cached), ref.describe()) if isinstance(cached, str) else None


def read_model_info(ref: ModelRef) -> ModelInfo:
    """model_index.json and the UNet and VAE configs, without weights or network; fails fast
    (one line) when the model is missing offline."""
    if ref.builtin is not None:
        b = ref.builtin
        if b.check is not None:
            b.check()
        return ModelInfo(
            ref, {}, dict(b.unet_config), dict(b.vae_config) if b.vae_config else None, b.vae_scale_factor
        )
    local = ref.kind == "local"
    path = find_config(ref.location, "model_index.json", ref.describe(), local=local)
    index = read_json(path, ref.describe()) if path is not None else {}
    folder = str(Path(ref.location).expanduser()) if local else ""
    unet_config = _component_config(ref, folder, "unet")
    vae_config = _component_config(ref, folder, "vae")
    vae_levels = len((vae_config or {}).get("block_out_channels") or (0, 0, 0, 0))
    revision = path.parent.name if path is not None and not local else None
    return ModelInfo(ref, index, unet_config, vae_config, 2 ** (vae_levels - 1), revision)


def index_unet_class(index: dict[str, Any]) -> str | None:
    """The UNet class model_index.json names, or None."""
    unet = index.get("unet")
    return unet[1] if isinstance(unet, (list, tuple)) and len(unet) == 2 else None


# ---- device and dtype -------------------------------------------------------------------------
def resolve_device(device: str) -> str:
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ScaleCrafterError(f"unknown device {device!r}: use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ScaleCrafterError(f"device {device!r} requested but CUDA is not available: use --device cpu or auto")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ScaleCrafterError(f"device {device!r} does not exist ({torch.cuda.device_count()} CUDA device(s))")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ScaleCrafterError(f"device {device!r} requested but MPS is not available: use --device cpu or auto")
    if dev.type not in {"cpu", "cuda", "mps"}:
        raise ScaleCrafterError(f"unsupported device {device!r}: use auto, cpu, cuda, cuda:N or mps")
    return str(dev)


def resolve_dtype(dtype: str, device: str):
    """auto: float16 on CUDA, float32 elsewhere."""
    if dtype not in DTYPES:
        raise ScaleCrafterError(f"unknown dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
    if dtype == "auto":
        return torch.float16 if device.startswith("cuda") else torch.float32
    if dtype == "float16" and device == "cpu":
        logger.warning("float16 on CPU is slow and some ops may be missing; float32 is the CPU default")
    return getattr(torch, dtype)


# ---- loading weights --------------------------------------------------------------------------
def build_builtin(ref: ModelRef, device: str, dtype):
    """A built-in model's pipeline on `device` in `dtype`."""
    logger.warning("%s: %s", ref.name, ref.builtin.note)
    with quiet_empty_fp32_warning():  # UNetMotionModel.from_unet2d casts too
        pipe = ref.builtin.build()
        pipe.to(device=device, dtype=dtype)
    return pipe


def from_pretrained(
    cls,
    location: str,
    what: str,
    *,
    local: bool,
    cached: bool,
    dtype=None,
    progress: bool = True,
    flag: str = "--model",
    **kwargs,
):
    """`cls.from_pretrained(location)` from files already here where they are (a folder, a cached
    repository, or offline); a cached copy found incomplete is completed online. Any failure is
    one line naming `what` and how to get it."""
    source = str(Path(location).expanduser()) if local else location
    if dtype is not None:
        kwargs["torch_dtype"] = dtype
    local_only = local or cached or hub_offline()
    with _loading_output(progress):
        try:
            return cls.from_pretrained(source, local_files_only=local_only, **kwargs)
        except _LOAD_ERRORS as exc:
            if type(exc).__name__ == "OutOfMemoryError":
                raise
            error = exc
        if local_only and not local and not hub_offline():
            logger.info("cached copy of %s is incomplete (%s); downloading the rest", location, error)
            try:
                return cls.from_pretrained(source, **kwargs)
            except _LOAD_ERRORS as exc:
                if type(exc).__name__ == "OutOfMemoryError":
                    raise
                error = exc
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    how = (
        "pass a complete diffusers folder (e.g. saved with `pipe.save_pretrained(DIR)`)"
        if local
        else download_hint(location, flag)
    )
    raise ScaleCrafterError(f"{what} could not be loaded ({first}): {how}") from error


@contextmanager
def _loading_output(progress: bool):
    """Hide the libraries' loading bars unless progress is wanted, and a deprecation notice we cannot act on."""
    import warnings

    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    states = [(mod, mod.is_progress_bar_enabled()) for mod in (diffusers_logging, transformers_logging)]
    if not progress:
        for mod, _ in states:
            mod.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            # `torch_dtype` works on every supported diffusers; newer ones only rename it to `dtype`.
            warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
            yield
    finally:
        for mod, enabled in states:
            if enabled:
                mod.enable_progress_bar()
            else:
                mod.disable_progress_bar()
