"""Random-weight pipelines with the real shapes of each family, and the inputs a pipeline gives its UNet.

Real families (sd15, sd21, sdxl, animatediff, modelscope) are built from their configurations:
the family's UNet (`families.FAMILIES`), the SD AutoencoderKL (4 levels, 128/256/512/512; SDXL's
with its scaling factor and fp32 upcast), CLIP / OpenCLIP text encoders of the real sizes and a
byte-level tokenizer (no download). Tiny models (`tiny-sd`, `tiny-sdxl`, `tiny-video`,
`tiny-video3d`) are the offline test pipelines. Weights are random: the numbers are speed and
memory, never image quality.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...engine.errors import ScaleCrafterError
from ...engine.families import SD_SCHEDULER_CONFIG, get_family
from ...jobs.family import sampling_defaults
from ...models.builtin import text_to_video_pipeline_class
from ...models.diffusers_warnings import quiet_empty_fp32_warning
from ...models.tiny import tiny_pipeline, tiny_tokenizer

_SD_VAE = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    latent_channels=4,
    norm_num_groups=32,
    sample_size=512,
    scaling_factor=0.18215,
)
_VAES = {
    "sd15": _SD_VAE,
    "sd21": dict(_SD_VAE, sample_size=768),
    "sdxl": dict(_SD_VAE, sample_size=1024, scaling_factor=0.13025, force_upcast=True),
    "animatediff": _SD_VAE,
    "modelscope": _SD_VAE,
}
_CLIP_L = dict(
    hidden_size=768,
    intermediate_size=3072,
    num_hidden_layers=12,
    num_attention_heads=12,
    hidden_act="quick_gelu",
    projection_dim=768,
)
_OPENCLIP_H = dict(
    hidden_size=1024,
    intermediate_size=4096,
    num_hidden_layers=23,
    num_attention_heads=16,
    hidden_act="gelu",
    projection_dim=512,
)
_OPENCLIP_BIGG = dict(
    hidden_size=1280,
    intermediate_size=5120,
    num_hidden_layers=32,
    num_attention_heads=20,
    hidden_act="gelu",
    projection_dim=1280,
)
_TEXT = {"sd15": _CLIP_L, "sd21": _OPENCLIP_H, "animatediff": _CLIP_L, "modelscope": _OPENCLIP_H}
TINY_MODELS = ("tiny-sd", "tiny-sdxl", "tiny-video", "tiny-video3d")
REAL_MODELS = ("sd15", "sd21", "sdxl", "animatediff", "modelscope")


@dataclass(frozen=True)
class BenchModel:
    """What a benchmark row runs: a family's real shapes, or a tiny offline model."""

    name: str
    family: str | None  # the preset family (None for tiny models: derived plans)
    video: bool
    guidance: float

    @property
    def tiny(self) -> bool:
        return self.family is None


def bench_model(name: str) -> BenchModel:
    if name in TINY_MODELS:
        return BenchModel(name, None, name.startswith("tiny-video"), 7.5)
    if name not in REAL_MODELS:
        raise ScaleCrafterError(
            f"unknown benchmark model '{name}': choose one of {', '.join(REAL_MODELS + TINY_MODELS)}"
        )
    fam = get_family(name)
    return BenchModel(name, name, fam.video, sampling_defaults(name).guidance)


class UNetHolder:
    """A pipeline stand-in for the engine: a UNet (meta-device copies for FLOP counting) and the VAE
    factor, doing classifier-free guidance on [uncond; cond] batches."""

    scalecrafter_batch_layout = "uncond,cond"
    do_classifier_free_guidance = True

    def __init__(self, unet: torch.nn.Module, vae_scale_factor: int = 8):
        self.unet, self.vae_scale_factor = unet, vae_scale_factor


def meta_copy(unet: torch.nn.Module) -> torch.nn.Module:
    """The same UNet class and configuration on the meta device (shapes, no weights)."""
    with torch.device("meta"):
        return type(unet).from_config(unet.config)


def _text_encoder(spec: dict, projection: bool):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(vocab_size=49408, max_position_embeddings=77, **spec)
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config).eval()


def real_pipeline(name: str, device: torch.device | str = "cpu"):
    """The family's pipeline with random weights, its modules built directly on `device`."""
    import diffusers

    fam = get_family(name)
    with torch.device(device):
        unet = getattr(diffusers, fam.unet_class)(**fam.unet_config).eval()
        vae = diffusers.AutoencoderKL(**_VAES[name]).eval()
        text_encoder = _text_encoder(_CLIP_L if name == "sdxl" else _TEXT[name], False)
        text_encoder_2 = _text_encoder(_OPENCLIP_BIGG, True) if name == "sdxl" else None
    scheduler = diffusers.DDIMScheduler(**SD_SCHEDULER_CONFIG)
    tokenizer = tiny_tokenizer(77)
    if name == "sdxl":
        return diffusers.StableDiffusionXLPipeline(
            vae=vae,
            text_encoder=text_encoder,
            text_encoder_2=text_encoder_2,
            tokenizer=tokenizer,
            tokenizer_2=tokenizer,
            unet=unet,
            scheduler=scheduler,
            add_watermarker=False,
        )
    if name == "animatediff":
        return diffusers.AnimateDiffPipeline(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            unet=unet,
            motion_adapter=None,
            scheduler=scheduler,
        )
    if name == "modelscope":
        return text_to_video_pipeline_class()(
            vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler
        )
    return diffusers.StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def build_pipeline(model: BenchModel, device: torch.device, dtype: torch.dtype, seed: int = 0):
    """The model's pipeline with random weights on `device` in `dtype` (real shapes built there: no host copy)."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), quiet_empty_fp32_warning():
        torch.manual_seed(seed)
        pipe = tiny_pipeline(model.name, seed) if model.tiny else real_pipeline(model.name, device)
        pipe.to(device, dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def unet_inputs(
    unet: torch.nn.Module,
    height: int,
    width: int,
    frames: int,
    device,
    dtype,
    vae_scale_factor: int = 8,
    batch: int = 2,
    seed: int = 0,
    tokens: int = 77,
) -> dict:
    """A CFG batch [uncond; cond] for a `height` x `width` pixel sample as the family's pipeline
    passes it to its UNet: per-frame text context for UNetMotionModel, once per video for
    UNet3DConditionModel, SDXL's added conditions (text embeddings and size ids). `tokens`: the
    text context's length (77 for the CLIP encoders; the tiny pipelines' tokenizer pads to 32)."""
    g = torch.Generator().manual_seed(seed)
    config = unet.config
    h, w = height // vae_scale_factor, width // vae_scale_factor
    shape = (batch, config.in_channels, frames, h, w) if frames else (batch, config.in_channels, h, w)
    context_rows = batch * frames if type(unet).__name__ == "UNetMotionModel" else batch
    kwargs = dict(
        sample=torch.randn(shape, generator=g).to(device, dtype),
        encoder_hidden_states=torch.randn(context_rows, tokens, config.cross_attention_dim, generator=g).to(
            device, dtype
        ),
    )
    if getattr(config, "addition_embed_type", None) == "text_time":
        text_dim = config.projection_class_embeddings_input_dim - 6 * config.addition_time_embed_dim
        kwargs["added_cond_kwargs"] = dict(
            text_embeds=torch.randn(batch, text_dim, generator=g).to(device, dtype),
            time_ids=torch.tensor([[height, width, 0, 0, height, width]] * batch).to(device, dtype),
        )
    return kwargs
