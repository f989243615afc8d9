"""Which family a job's model is, decided in one place, and how each family is sampled by default.

`job_family` decides: the UNet's architecture first (the one family whose layout it has), then
the family named for the model (`--family`, a built-in model's entry, or a known hub id: that
order, in `named_family`), then the defaults of its kind. Never a model's name or folder.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..engine.errors import ScaleCrafterError
from ..engine.families import FAMILIES, ambiguous_family_error, families_of_layout

# FreeU (Si et al. 2023): the reference code's values for SD 1.5 / 2.1 / SDXL (AnimateDiff takes
# SD 1.5's), the FreeU authors' ModelScope values for the UNet3D models.
_FREEU_SD15 = dict(b1=1.2, b2=1.4, s1=0.9, s2=0.2)
_FREEU_SD21 = dict(b1=1.1, b2=1.2, s1=0.9, s2=0.2)
_FREEU_SDXL = dict(b1=1.1, b2=1.2, s1=0.6, s2=0.4)
_FREEU_MODELSCOPE = dict(b1=1.5, b2=1.6, s1=0.9, s2=0.2)


@dataclass(frozen=True)
class SamplingDefaults:
    """How a family is sampled when the job does not say."""

    guidance: float = 7.5  # classifier-free guidance scale
    freeu: dict[str, float] | None = None  # FreeU parameters (--freeu); None: not tuned for it
    vae_tiling_side: int = 1536  # --vae-tiling auto tiles the decode above this many pixels per side
    video: bool = False


SAMPLING: dict[str, SamplingDefaults] = {
    "sd15": SamplingDefaults(freeu=_FREEU_SD15),
    "sd21": SamplingDefaults(freeu=_FREEU_SD21),
    "sdxl": SamplingDefaults(guidance=5.0, freeu=_FREEU_SDXL, vae_tiling_side=1024),
    "animatediff": SamplingDefaults(freeu=_FREEU_SD15, vae_tiling_side=1024, video=True),
    "modelscope": SamplingDefaults(guidance=9.0, freeu=_FREEU_MODELSCOPE, vae_tiling_side=1024, video=True),
    "zeroscope": SamplingDefaults(guidance=9.0, freeu=_FREEU_MODELSCOPE, vae_tiling_side=1024, video=True),
    # the shipped shapes models (models.shapes): pixel space, trained with guidance 3
    "shapes32": SamplingDefaults(guidance=3.0),
    "shapes32-motion": SamplingDefaults(guidance=3.0, video=True),
}
IMAGE_FAMILIES = tuple(name for name, d in SAMPLING.items() if not d.video)
VIDEO_FAMILIES = tuple(name for name, d in SAMPLING.items() if d.video)
UNET3D_FAMILIES = ("modelscope", "zeroscope")


def sampling_defaults(family: str) -> SamplingDefaults:
    try:
        return SAMPLING[family]
    except KeyError:
        raise ScaleCrafterError(f"unknown model family '{family}': choose one of {', '.join(SAMPLING)}") from None


# Hub ids whose family is known (the weights decide the trained size, which the architecture alone
# may not: ModelScope and Zeroscope share one UNet3D layout). Exact ids only: fine-tunes and local
# folders go by their architecture, or by family= / --family where that cannot decide.
KNOWN_MODELS: dict[str, str] = {
    "stable-diffusion-v1-5/stable-diffusion-v1-5": "sd15",
    "runwayml/stable-diffusion-v1-5": "sd15",
    "stabilityai/stable-diffusion-2-1-base": "sd21",
    "stabilityai/stable-diffusion-xl-base-1.0": "sdxl",
    "ali-vilab/text-to-video-ms-1.7b": "modelscope",
    "damo-vilab/text-to-video-ms-1.7b": "modelscope",
    "cerspense/zeroscope_v2_576w": "zeroscope",
}


def named_family(
    model_id: str | None, *, video: bool, family: str | None = None, builtin: str | None = None
) -> str | None:
    """The family named for a model: `family` (--family), else a built-in model's, else a known hub
    id's (an SD 1.5 base sampled as video is AnimateDiff); None when nothing names one."""
    if family is not None:
        return family
    if builtin is not None:
        return builtin
    known = KNOWN_MODELS.get(model_id) if model_id else None
    if not video:
        return known
    return "animatediff" if known == "sd15" else known if known in VIDEO_FAMILIES else None


def job_family(ref, unet_class: str | None, unet_config, *, video: bool, option: str | None = None) -> str:
    """The family a job samples its model as: the architecture's, where it fits one family's layout;
    where it fits several (ModelScope and Zeroscope), the one named for it, else a one-line error;
    where it fits none (a fine-tune of another size, a built-in model), the one named for it, else
    the defaults of its kind. A --family (`option`) that the architecture contradicts is an error."""
    if video and unet_class == "UNet2DConditionModel":  # an SD base that AnimateDiff's adapter turns into video
        unet_class, unet_config = "UNetMotionModel", unet_config
    candidates = families_of_layout(unet_class, unet_config) if unet_class and unet_config else ()
    named = ref.family
    if len(candidates) == 1:
        if option is not None and option != candidates[0] and option in FAMILIES:
            raise ScaleCrafterError(
                f"--family {option} does not fit {ref.describe()}: its UNet has the {candidates[0]} layout; "
                f"drop --family or pass --family {candidates[0]}"
            )
        return candidates[0]
    if len(candidates) > 1:
        if named in candidates:
            return named
        raise ambiguous_family_error(unet_class, candidates)
    if named is not None:
        return named
    if video:
        return "modelscope" if unet_class == "UNet3DConditionModel" else "animatediff"
    return defaults_family(unet_config or {})


def defaults_family(unet_config) -> str:
    """The image family whose sampling defaults (guidance, FreeU, tiling) suit any SD-like UNet:
    sdxl when it takes "text_time" added conditioning, else sd21 (1024-d text) or sd15. Loose on
    purpose; `detect_family` is the strict check of which reference presets apply."""
    get = unet_config.get if isinstance(unet_config, dict) else lambda k, d=None: getattr(unet_config, k, d)
    if get("addition_embed_type", None) == "text_time":
        return "sdxl"
    return "sd21" if get("cross_attention_dim", None) == 1024 else "sd15"
