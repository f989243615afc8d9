"""Model families: the UNet layouts the reference presets are written for, their trained sizes,
and the reference DDIM schedule the presets' windows are defined on. How a job samples each family
by default (guidance, FreeU, VAE tiling) and which hub ids are which family are the application's
(`jobs.family`); the shipped demo models keep their own layouts (`models.shapes`).

Each family carries the real UNet configuration, so its layer names can be checked on a model
built on the meta device (no weights, no download).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import ScaleCrafterError

if TYPE_CHECKING:  # torch loads where a UNet is built: scv's parser lists the families without it
    from torch import nn

# The Stable Diffusion noise schedule with DDIM as the reference code samples it (leading spacing,
# steps_offset 1: DDIM-50 visits t = 981 - 20 i, on which the plans' reference steps are defined).
SD_SCHEDULER_CONFIG: dict[str, Any] = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    clip_sample=False,
    set_alpha_to_one=False,
    steps_offset=1,
    timestep_spacing="leading",
)

_SD15_UNET = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    cross_attention_dim=768,
    attention_head_dim=8,
)
_SD21_UNET = dict(_SD15_UNET, cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20), use_linear_projection=True)
_SDXL_UNET = dict(
    sample_size=128,
    in_channels=4,
    out_channels=4,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    block_out_channels=(320, 640, 1280),
    layers_per_block=2,
    transformer_layers_per_block=(1, 2, 10),
    attention_head_dim=(5, 10, 20),
    cross_attention_dim=2048,
    use_linear_projection=True,
    addition_embed_type="text_time",
    addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816,
)
_MOTION_UNET = dict(
    sample_size=64,
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    cross_attention_dim=768,
    motion_max_seq_length=32,
)
_UNET3D = dict(
    sample_size=32,
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    cross_attention_dim=1024,
    attention_head_dim=64,
)


def size_multiple(levels: int, pixels_per_sample: int = 1) -> int:
    """Per side, what a size must be a multiple of (the one rule): one 2x per downsampling level of a
    UNet with `levels` levels, times the pixels per UNet sample (the VAE's factor; 1 in samples)."""
    return pixels_per_sample * 2 ** (levels - 1)


@dataclass(frozen=True)
class Family:
    """A UNet layout the reference presets are written for, and the size it was trained at."""

    name: str
    unet_class: str  # diffusers class name
    unet_config: dict = field(repr=False)
    base_height: int  # pixels the model was trained at
    base_width: int
    latent_factor: int = 8  # pixels per UNet sample unit (the VAE's scale factor)
    video: bool = False

    @property
    def levels(self) -> int:
        return len(self.unet_config["block_out_channels"])

    @property
    def size_multiple(self) -> int:
        """Pixels per side the layout needs."""
        return size_multiple(self.levels, self.latent_factor)


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("sd15", "UNet2DConditionModel", _SD15_UNET, 512, 512),
        Family("sd21", "UNet2DConditionModel", _SD21_UNET, 512, 512),
        Family("sdxl", "UNet2DConditionModel", _SDXL_UNET, 1024, 1024),
        Family("animatediff", "UNetMotionModel", _MOTION_UNET, 512, 512, video=True),
        Family("modelscope", "UNet3DConditionModel", _UNET3D, 256, 256, video=True),
        Family("zeroscope", "UNet3DConditionModel", _UNET3D, 320, 576, video=True),
    )
}
IMAGE_FAMILIES = tuple(name for name, f in FAMILIES.items() if not f.video)
VIDEO_FAMILIES = tuple(name for name, f in FAMILIES.items() if f.video)


def get_family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ScaleCrafterError(f"unknown model family '{name}': choose one of {', '.join(FAMILIES)}") from None


def meta_unet(family: str | Family) -> nn.Module:
    """The family's real UNet architecture on the meta device: names and shapes, no weights."""
    import diffusers
    import torch

    fam = get_family(family) if isinstance(family, str) else family
    cls = getattr(diffusers, fam.unet_class)
    with torch.device("meta"):
        return cls(**fam.unet_config)


def layout_families(unet: nn.Module) -> tuple[str, ...]:
    """Every family whose UNet layout this UNet has, from its class and config (never its name).
    Empty: no family's layout; more than one: the architecture cannot tell them apart."""
    return families_of_layout(type(unet).__name__, getattr(unet, "config", None))


def families_of_layout(unet_class: str, config) -> tuple[str, ...]:
    """`layout_families` from a UNet class name and its config (a dict, e.g. read from config.json, or an object)."""
    if config is None:
        return ()
    get = config.get if isinstance(config, dict) else lambda k, d=None: getattr(config, k, d)
    channels = tuple(get("block_out_channels", ()) or ())
    sample = get("sample_size", None)
    cross = get("cross_attention_dim", None)
    sd_channels = (320, 640, 1280, 1280)
    if unet_class == "UNetMotionModel":
        return ("animatediff",) if channels == sd_channels and cross == 768 else ()
    if unet_class == "UNet3DConditionModel":
        return ("modelscope", "zeroscope") if channels == sd_channels and cross == 1024 else ()
    if unet_class != "UNet2DConditionModel":
        return ()
    if get("addition_embed_type", None) == "text_time" and sample == 128 and channels == (320, 640, 1280):
        return ("sdxl",)
    if channels == sd_channels and sample == 64 and cross in (768, 1024):
        return ("sd15",) if cross == 768 else ("sd21",)
    return ()


def ambiguous_family_error(unet_class: str, candidates: tuple[str, ...]) -> ScaleCrafterError:
    sizes = ", ".join(
        f"{n} (trained at {get_family(n).base_width}x{get_family(n).base_height} WxH)" for n in candidates
    )
    return ScaleCrafterError(
        f"this {unet_class} has the layout of several model families, {sizes}, and the architecture "
        f"cannot tell which: pass family= one of {', '.join(candidates)} (scv: --family)"
    )
