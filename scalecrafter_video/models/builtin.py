"""What every model built in code declares (`BuiltinModel`), and the one import of diffusers'
deprecated text-to-video pipeline class."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..engine.errors import ScaleCrafterError

MAX_FRAMES_3D = 128  # UNet3D has no hard frame limit; beyond this it is far outside anything trained


@dataclass(frozen=True)
class BuiltinModel:
    """A model built in code, with no weights to download: how to build it and what is known
    about it before it is built (the checks before loading read these)."""

    name: str
    kind: str  # what sidecars record as the model's source, e.g. "tiny"
    family: str  # the family whose defaults it samples with (guidance, FreeU, VAE tiling)
    video: bool
    build: Callable[[], Any] = field(repr=False)  # -> the pipeline, on the CPU in float32
    unet_config: dict[str, Any] = field(repr=False)
    vae_config: dict[str, Any] | None = field(default=None, repr=False)
    vae_scale_factor: int = 8  # pixels per UNet sample unit (1 for a pixel-space model)
    max_frames: int | None = None  # video models: the most frames its temporal layers take
    default_frames: int | None = None  # video models: the clip length it was trained on (--frames default)
    motion_adapter: str | None = None  # what sidecars record for a built-in motion adapter
    classes: tuple[str, ...] | None = None  # a class-conditional model: the only prompts it takes
    check: Callable[[], None] | None = field(default=None, repr=False)  # fails fast when its files are missing
    note: str = ""  # said when it loads and recorded in sidecars


def text_to_video_pipeline_class():
    """diffusers' TextToVideoSDPipeline (ModelScope / Zeroscope). diffusers marks it deprecated;
    this is the one place that imports it, so its disappearance is one clear error."""
    try:
        from diffusers import TextToVideoSDPipeline
    except ImportError as e:  # pragma: no cover - depends on the installed diffusers
        import diffusers

        raise ScaleCrafterError(
            f"diffusers {diffusers.__version__} no longer ships TextToVideoSDPipeline (ModelScope/Zeroscope "
            "video); install a diffusers version that has it, e.g. pip install 'diffusers>=0.30,<=0.42.1'"
        ) from e
    return TextToVideoSDPipeline
