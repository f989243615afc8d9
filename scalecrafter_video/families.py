"""Model families: the UNet layouts the presets are written for, with their base sizes.

Each family carries the real UNet configuration, so its layer names can be checked on a model
built on the meta device (no weights, no download).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .errors import ScaleCrafterError

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
_SD21_UNET = dict(
    _SD15_UNET, cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20), use_linear_projection=True
)
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


@dataclass(frozen=True)
class Family:
    """A UNet layout and how it is sampled by default."""

    name: str
    unet_class: str  # diffusers class name
    unet_config: dict = field(repr=False)
    base_height: int  # pixels the model was trained at
    base_width: int
    latent_factor: int = 8  # pixels per UNet sample unit (the VAE's scale factor)
    guidance: float = 7.5
    description: str = ""
    video: bool = False

    @property
    def levels(self) -> int:
        return len(self.unet_config["block_out_channels"])


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("sd15", "UNet2DConditionModel", _SD15_UNET, 512, 512, description="Stable Diffusion 1.5"),
        Family("sd21", "UNet2DConditionModel", _SD21_UNET, 512, 512, description="Stable Diffusion 2.1 base (512)"),
        Family("sdxl", "UNet2DConditionModel", _SDXL_UNET, 1024, 1024, guidance=5.0, description="Stable Diffusion XL base"),
        Family("animatediff", "UNetMotionModel", _MOTION_UNET, 512, 512, description="AnimateDiff (SD 1.5 + motion adapter)", video=True),
        Family("modelscope", "UNet3DConditionModel", _UNET3D, 256, 256, guidance=9.0, description="ModelScope text-to-video 1.7B", video=True),
        Family("zeroscope", "UNet3DConditionModel", _UNET3D, 320, 576, guidance=9.0, description="Zeroscope v2 576w (576x320)", video=True),
    )
}


def get_family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ScaleCrafterError(
            f"unknown model family '{name}': choose one of {', '.join(FAMILIES)}"
        ) from None


def meta_unet(family: str | Family) -> torch.nn.Module:
    """The family's real UNet architecture on the meta device: names and shapes, no weights."""
    import diffusers

    fam = get_family(family) if isinstance(family, str) else family
    cls = getattr(diffusers, fam.unet_class)
    with torch.device("meta"):
        return cls(**fam.unet_config)


def detect_family(unet: torch.nn.Module) -> str | None:
    """The family whose reference presets fit this UNet, from its class and config (never its hub name)."""
    config = getattr(unet, "config", None)
    if config is None:
        return None
    name = type(unet).__name__
    channels = tuple(getattr(config, "block_out_channels", ()) or ())
    sample = getattr(config, "sample_size", None)
    cross = getattr(config, "cross_attention_dim", None)
    sd_channels = (320, 640, 1280, 1280)
    if name == "UNetMotionModel":
        return "animatediff" if channels == sd_channels and cross == 768 else None
    if name == "UNet3DConditionModel":  # Zeroscope shares this layout: pass family="zeroscope"
        return "modelscope" if channels == sd_channels and cross == 1024 else None
    if name != "UNet2DConditionModel":
        return None
    if getattr(config, "addition_embed_type", None) == "text_time" and sample == 128 and channels == (320, 640, 1280):
        return "sdxl"
    if channels == sd_channels and sample == 64:
        return {768: "sd15", 1024: "sd21"}.get(cross)
    return None
