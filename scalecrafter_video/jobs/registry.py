"""What a --model value names: a built-in model, an alias, a local diffusers folder or a hub id.

Built-in models are one table (`BUILTIN_MODELS`): each entry says how to build the model and what
is known about it before it is built, so a new kind of built-in model is one entry here, not a
branch in every function. The family comes from --family, a built-in model's entry or the known
hub ids (`family.named_family`), never from a name; where none names it, the UNet decides.
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub.utils import HFValidationError, validate_repo_id

from ..engine.errors import ScaleCrafterError
from ..models.builtin import BuiltinModel
from ..models.shapes.builtin import SHAPES_MODELS
from ..models.tiny import TINY_MODELS
from .family import named_family
from .loading import ModelRef, is_local_path

SD15_ID = "stable-diffusion-v1-5/stable-diffusion-v1-5"
IMAGE_ALIASES: dict[str, str] = {
    "sd15": SD15_ID,
    "sd21": "stabilityai/stable-diffusion-2-1-base",
    "sdxl": "stabilityai/stable-diffusion-xl-base-1.0",
}
VIDEO_ALIASES: dict[str, str] = {  # alias -> repo id (its family: family.KNOWN_MODELS)
    "animatediff": SD15_ID,
    "sd15": SD15_ID,  # an SD 1.5 base with --video is AnimateDiff
    "zeroscope": "cerspense/zeroscope_v2_576w",
    "modelscope": "ali-vilab/text-to-video-ms-1.7b",
}
BUILTIN_MODELS: dict[str, BuiltinModel] = {**TINY_MODELS, **SHAPES_MODELS}
SMOKE_PROMPT = "smoke test"  # what the tiny random models sample when no prompt is given
NO_SDXL_VIDEO = (
    "SDXL video needs AnimateDiff's SDXL motion adapter, which scv does not support: use an SD 1.5 base "
    "(--model animatediff, the default) or --model zeroscope / modelscope"
)


def resolve_model(model: str, *, video: bool = False, family: str | None = None) -> ModelRef:
    """Where `model` points, for the image (or, with `video`, the video) front end, and its
    family: `family` (--family) if given, else the built-in model's or the known hub id's."""
    if not model or not model.strip():
        raise ScaleCrafterError("--model is empty: pass an alias (sd15, sd21, sdxl), a hub id or a local folder")
    aliases = VIDEO_ALIASES if video else IMAGE_ALIASES
    builtins = {name: b for name, b in BUILTIN_MODELS.items() if b.video == video}
    builtin = BUILTIN_MODELS.get(model)
    if builtin is not None and builtin.video != video:
        if builtin.video:
            raise ScaleCrafterError(f"model {model!r} is a video model: pass --video")
        raise ScaleCrafterError(f"{model!r} is an image model; built-in video models: {', '.join(builtins)}")
    if builtin is not None:
        return ModelRef(
            model, builtin.kind, model, named_family(None, video=video, family=family, builtin=builtin.family), builtin
        )
    if model in aliases:
        return ModelRef(model, "hub", aliases[model], named_family(aliases[model], video=video, family=family))
    if video and model == "sdxl":
        raise ScaleCrafterError(f"--video --model sdxl: {NO_SDXL_VIDEO}")
    if not video and model in VIDEO_ALIASES:
        raise ScaleCrafterError(f"model {model!r} is a video model: pass --video")
    if is_local_path(model):
        return ModelRef(model, "local", str(Path(model).expanduser()), family)
    try:
        validate_repo_id(model)
    except HFValidationError:
        raise ScaleCrafterError(
            f"{'video ' if video else ''}model {model!r} is not an alias ({', '.join([*aliases, *builtins])}), "
            "a local folder or a valid hub id (owner/name)"
        ) from None
    return ModelRef(model, "hub", model, named_family(model, video=video, family=family))


def default_prompt(model: str) -> str:
    """The prompt of a run that names none: the tiny random models draw noise whatever the prompt;
    every other model needs one (a class-conditional model is told its classes)."""
    builtin = BUILTIN_MODELS.get(model)
    if builtin is not None and builtin.kind == "tiny":
        return SMOKE_PROMPT
    if builtin is not None and builtin.classes:
        raise ScaleCrafterError(
            f"no prompt: {model} draws one of {', '.join(builtin.classes)} (e.g. --prompt {builtin.classes[0]})"
        )
    raise ScaleCrafterError("no prompt: pass --prompt TEXT or --prompts FILE")


def default_frames(model: str, fallback: int) -> int:
    """Frames of a video run that names none: a built-in model's clip length, else `fallback`."""
    builtin = BUILTIN_MODELS.get(model)
    return builtin.default_frames if builtin is not None and builtin.default_frames else fallback
