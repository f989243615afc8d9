"""The shipped shapes models as built-in models of `scv generate`, `scv sweep` and `scv ui`.

`shapes32` is the class-conditional 32x32 pixel-space UNet of `scv demo` (prompts are its class
names: circle, square, triangle); `shapes32-motion` is the same UNet with its trained motion
modules (8-frame clips). Both sample through `demo.pipeline.ShapesPipeline` (DDIM + CFG with the
null class, batch [uncond; cond]), so every method and every front-end check applies to a model
that was actually trained, offline, on a CPU.
"""

from __future__ import annotations

from ...engine.errors import ScaleCrafterError
from ..builtin import BuiltinModel
from .data import CLASS_NAMES, FRAMES
from .model import ASSET_DIR, CONFIG_NAME, MOTION_UNET_CONFIG, UNET_CONFIG, WEIGHTS_NAME
from .motion_model import MOTION_WEIGHTS_NAME

NOTE = "the shipped shapes demo model (class-conditional: prompts are {})".format(", ".join(CLASS_NAMES))


def _require(*names: str) -> None:
    missing = [n for n in names if not (ASSET_DIR / n).is_file()]
    if missing:
        raise ScaleCrafterError(
            f"this install has no {missing[0]} in {ASSET_DIR}: reinstall scalecrafter_video, or train it "
            "with the repository's scripts/train_demo_model.py / scripts/train_motion_model.py"
        )


def _image_pipeline():
    from .model import load_demo_model
    from .pipeline import ShapesPipeline

    return ShapesPipeline.from_model(load_demo_model())


def _video_pipeline():
    from .motion_model import load_motion_model
    from .pipeline import ShapesPipeline

    return ShapesPipeline.from_model(load_motion_model())


SHAPES_MODELS: dict[str, BuiltinModel] = {
    "shapes32": BuiltinModel(
        "shapes32",
        "shipped",
        "shapes32",
        False,
        _image_pipeline,
        UNET_CONFIG,
        vae_scale_factor=1,
        classes=tuple(CLASS_NAMES),
        check=lambda: _require(WEIGHTS_NAME, CONFIG_NAME),
        note=NOTE,
    ),
    "shapes32-motion": BuiltinModel(
        "shapes32-motion",
        "shipped",
        "shapes32-motion",
        True,
        _video_pipeline,
        MOTION_UNET_CONFIG,
        vae_scale_factor=1,
        max_frames=MOTION_UNET_CONFIG["motion_max_seq_length"],
        default_frames=FRAMES,
        motion_adapter="shapes32-motion (shipped)",
        classes=tuple(CLASS_NAMES),
        check=lambda: _require(WEIGHTS_NAME, CONFIG_NAME, MOTION_WEIGHTS_NAME),
        note=NOTE,
    ),
}
