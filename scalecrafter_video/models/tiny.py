"""Tiny random pipelines built in code, for offline tests and smoke runs. Their output is NOISE.

All four have a 64 px base (latent sample_size 8), a real 8x AutoencoderKL (4 blocks, small
channels), a tiny CLIP text encoder, a CLIP tokenizer over an in-memory byte-level vocabulary and
DDIM with the SD defaults:

- ``tiny-sd``: the SD 1.5 UNet layout (4 levels); ``tiny-sdxl``: the SDXL layout (3 levels, two
  text encoders, "text_time" added conditioning).
- ``tiny-video``: AnimateDiff layout. A tiny SD-1.5-layout ``UNet2DConditionModel`` plus a tiny
  ``MotionAdapter`` (max sequence length 32, like AnimateDiff v1-5-2), turned into a
  ``UNetMotionModel`` by ``AnimateDiffPipeline``.
- ``tiny-video3d``: ModelScope / Zeroscope layout. A tiny ``UNet3DConditionModel`` (temporal
  Conv3d ``temp_convs`` and temporal attention) through ``TextToVideoSDPipeline``.

Weights are random and seeded. In the video models every weight is drawn, including the layers
diffusers initialises to zero (motion-module and temporal-conv output projections), so the
temporal layers really mix frames: a test that checks "temporal layers untouched" would otherwise
compare zeros with zeros. Nothing here reads the network or the Hugging Face cache.
"""

from __future__ import annotations

from typing import Any

import torch

from ..engine.errors import ScaleCrafterError
from ..engine.families import SD_SCHEDULER_CONFIG
from .builtin import MAX_FRAMES_3D, BuiltinModel, text_to_video_pipeline_class

TINY_NOTE = "tiny random pipeline with untrained weights: the output is noise (for tests and smoke runs only)"
TINY_MAX_FRAMES = 32  # the tiny motion adapter's motion_max_seq_length (as AnimateDiff v1-5-2)

_TEXT_DIM = 32
_MAX_TOKENS = 32
_TIME_DIM = 8
_CH = (32, 32, 64, 64)  # video UNet block widths (SD-1.5 layout: 4 levels, 2 resnets per down block)
# What the AnimateDiff-layout 2D UNet and the UNet3D share (the block types differ).
_VIDEO_UNET = dict(
    sample_size=8,
    in_channels=4,
    out_channels=4,
    layers_per_block=2,
    block_out_channels=_CH,
    cross_attention_dim=_TEXT_DIM,
    attention_head_dim=8,
    norm_num_groups=8,
)
TINY_UNET_CONFIGS: dict[str, dict[str, Any]] = {
    # SD1.5 layout: 4 levels, cross-attention in the three outer ones.
    "tiny-sd": dict(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        block_out_channels=(32, 32, 64, 64),
        layers_per_block=1,
        norm_num_groups=8,
        cross_attention_dim=_TEXT_DIM,
        attention_head_dim=4,
    ),
    # SDXL layout: 3 levels, two text encoders, "text_time" added conditioning.
    "tiny-sdxl": dict(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        norm_num_groups=8,
        cross_attention_dim=2 * _TEXT_DIM,
        attention_head_dim=(2, 4, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=_TIME_DIM,
        projection_class_embeddings_input_dim=6 * _TIME_DIM + _TEXT_DIM,
    ),
    # The AnimateDiff base: the motion adapter adds its motion modules at loading.
    "tiny-video": dict(
        _VIDEO_UNET,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    ),
    "tiny-video3d": dict(
        _VIDEO_UNET,
        down_block_types=("CrossAttnDownBlock3D",) * 3 + ("DownBlock3D",),
        up_block_types=("UpBlock3D",) + ("CrossAttnUpBlock3D",) * 3,
    ),
}
TINY_VAE_CONFIG: dict[str, Any] = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(8, 16, 16, 16),
    layers_per_block=1,
    latent_channels=4,
    norm_num_groups=8,
    sample_size=64,
)


def tiny_pipeline(name: str, seed: int = 0):
    """Build the tiny pipeline `name` with weights seeded by `seed` (the caller's RNG untouched)."""
    builders = {
        "tiny-sd": _build_sd,
        "tiny-sdxl": _build_sdxl,
        "tiny-video": _build_animatediff,
        "tiny-video3d": _build_unet3d,
    }
    if name not in builders:
        raise ScaleCrafterError(f"unknown tiny pipeline {name!r}; choose one of {', '.join(builders)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        pipe = builders[name](seed)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _builtin(name: str, family: str, video: bool = False, **kw) -> BuiltinModel:
    # `tiny_pipeline` is looked up when the model is built, so tests can hand out a shared pipeline
    return BuiltinModel(
        name,
        "tiny",
        family,
        video,
        lambda: tiny_pipeline(name),
        TINY_UNET_CONFIGS[name],
        TINY_VAE_CONFIG,
        note=TINY_NOTE,
        **kw,
    )


TINY_MODELS: dict[str, BuiltinModel] = {
    "tiny-sd": _builtin("tiny-sd", "sd15"),
    "tiny-sdxl": _builtin("tiny-sdxl", "sdxl"),
    "tiny-video": _builtin("tiny-video", "animatediff", True, max_frames=TINY_MAX_FRAMES, motion_adapter="tiny"),
    "tiny-video3d": _builtin("tiny-video3d", "modelscope", True, max_frames=MAX_FRAMES_3D),
}


# ---- parts --------------------------------------------------------------------------------------
def tiny_tokenizer(max_length: int = _MAX_TOKENS):
    """A CLIP tokenizer over single bytes (no merges): every prompt tokenizes, offline."""
    from transformers import CLIPTokenizer

    chars = _byte_chars()
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in chars:
        vocab[c] = len(vocab)
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=max_length)


def _byte_chars() -> list[str]:
    # GPT-2 / CLIP byte-to-unicode table: printable stand-ins for the 256 byte values.
    bs = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def tiny_text_encoder(tokenizer, seed: int | None = None, projection: bool = False):
    """A 2-layer CLIP text encoder for `tokenizer` (with a projection for SDXL's second encoder)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    if seed is not None:
        torch.manual_seed(seed)
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=_TEXT_DIM,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        hidden_act="gelu",
        **({"projection_dim": _TEXT_DIM} if projection else {}),
    )
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config).eval()


def tiny_vae(seed: int | None = None):
    """A real 8x AutoencoderKL (4 blocks, small channels), random weights (seeded when `seed` is given)."""
    from diffusers import AutoencoderKL

    if seed is not None:
        torch.manual_seed(seed)
    return AutoencoderKL(**TINY_VAE_CONFIG).eval()


def tiny_scheduler():
    from diffusers import DDIMScheduler

    return DDIMScheduler(**SD_SCHEDULER_CONFIG)  # DDIM-50 gives t = 981 - 20 i


def tiny_unet2d(seed: int = 0):
    """SD-1.5-layout UNet2DConditionModel (the AnimateDiff base), tiny widths."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(**TINY_UNET_CONFIGS["tiny-video"]).eval()


def tiny_unet3d(seed: int = 0):
    """ModelScope-layout UNet3DConditionModel (temp_convs + temporal attention), tiny widths."""
    from diffusers import UNet3DConditionModel

    torch.manual_seed(seed)
    return UNet3DConditionModel(**TINY_UNET_CONFIGS["tiny-video3d"]).eval()


def tiny_motion_adapter(seed: int = 0, max_frames: int = TINY_MAX_FRAMES):
    from diffusers import MotionAdapter

    torch.manual_seed(seed + 1)
    return MotionAdapter(
        block_out_channels=_CH,
        motion_layers_per_block=2,
        motion_num_attention_heads=4,
        motion_norm_num_groups=8,
        motion_max_seq_length=max_frames,
        use_motion_mid_block=True,
    ).eval()


# ---- pipelines ----------------------------------------------------------------------------------
def _build_sd(seed: int):
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    unet = UNet2DConditionModel(**TINY_UNET_CONFIGS["tiny-sd"])
    tokenizer = tiny_tokenizer()
    return StableDiffusionPipeline(
        vae=tiny_vae(),
        text_encoder=tiny_text_encoder(tokenizer),
        tokenizer=tokenizer,
        unet=unet,
        scheduler=tiny_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def _build_sdxl(seed: int):
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel

    unet = UNet2DConditionModel(**TINY_UNET_CONFIGS["tiny-sdxl"])
    tokenizer = tiny_tokenizer()
    return StableDiffusionXLPipeline(
        vae=tiny_vae(),
        text_encoder=tiny_text_encoder(tokenizer),
        text_encoder_2=tiny_text_encoder(tokenizer, projection=True),
        tokenizer=tokenizer,
        tokenizer_2=tiny_tokenizer(),
        unet=unet,
        scheduler=tiny_scheduler(),
        force_zeros_for_empty_prompt=True,
        add_watermarker=False,
    )


def _build_animatediff(seed: int):
    from diffusers import AnimateDiffPipeline

    tokenizer = tiny_tokenizer()
    pipe = AnimateDiffPipeline(
        text_encoder=tiny_text_encoder(tokenizer, seed),
        vae=tiny_vae(seed),
        tokenizer=tokenizer,
        unet=tiny_unet2d(seed),
        motion_adapter=tiny_motion_adapter(seed),
        scheduler=tiny_scheduler(),
        feature_extractor=None,
        image_encoder=None,
    )
    return _temporal_layers_drawn(pipe, seed)


def _build_unet3d(seed: int):
    tokenizer = tiny_tokenizer()
    pipe = text_to_video_pipeline_class()(
        text_encoder=tiny_text_encoder(tokenizer, seed),
        vae=tiny_vae(seed),
        tokenizer=tokenizer,
        unet=tiny_unet3d(seed),
        scheduler=tiny_scheduler(),
    )
    return _temporal_layers_drawn(pipe, seed)


def _temporal_layers_drawn(pipe, seed: int, std: float = 0.05):
    """Give every all-zero weight matrix / kernel of the UNet a seeded random value (zero-init
    output projections of motion modules and temporal convs would make the temporal path an identity)."""
    g = torch.Generator().manual_seed(seed + 7)
    with torch.no_grad():
        for p in pipe.unet.parameters():
            if p.dim() >= 2 and not torch.any(p):
                p.copy_(torch.randn(p.shape, generator=g) * std)
    pipe.unet.eval()
    return pipe
