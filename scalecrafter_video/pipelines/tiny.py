"""Tiny random Stable Diffusion pipelines built in code, for offline tests and smoke runs.

`tiny-sd` has the SD1.5 UNet layout (4 levels), `tiny-sdxl` the SDXL layout (3 levels, two text
encoders, "text_time" added conditioning); both use a real 8x AutoencoderKL, a CLIP tokenizer with
an in-memory byte-level vocabulary and DDIM with the SD defaults. The latent sample size is 8, so
the base resolution is 64 px. Weights are random (seeded): every output is noise. They exist to
exercise the patching, the pipelines and the CLI end to end without weights or network.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline

logger = logging.getLogger(__name__)

TINY_MODELS = ("tiny-sd", "tiny-sdxl")
TINY_NOTE = "tiny random pipeline with untrained weights: the output is noise (for tests and smoke runs only)"

_TEXT_DIM = 32
_MAX_TOKENS = 32
# The Stable Diffusion noise schedule and DDIM settings (leading spacing, steps_offset 1).
SD_SCHEDULER_CONFIG = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    clip_sample=False,
    set_alpha_to_one=False,
    steps_offset=1,
    timestep_spacing="leading",
)


_TIME_DIM = 8
TINY_UNET_CONFIGS: dict[str, dict] = {
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
}
TINY_VAE_CONFIG: dict = dict(
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
TINY_VAE_SCALE_FACTOR = 8


def is_tiny(model: str) -> bool:
    return model in TINY_MODELS


def tiny_pipeline(name: str, seed: int = 0) -> DiffusionPipeline:
    """Build the tiny pipeline `name` ("tiny-sd" or "tiny-sdxl") with weights seeded by `seed`."""
    builders = {"tiny-sd": _build_sd, "tiny-sdxl": _build_sdxl}
    if name not in builders:
        raise ValueError(f"unknown tiny pipeline {name!r}; known: {', '.join(TINY_MODELS)}")
    logger.warning("%s: %s", name, TINY_NOTE)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        pipe = builders[name]()
    pipe.set_progress_bar_config(disable=True)
    return pipe


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
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def _text_config(projection: bool):
    from transformers import CLIPTextConfig

    kwargs = dict(
        vocab_size=2 + 2 * 256,
        hidden_size=_TEXT_DIM,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=_MAX_TOKENS,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        hidden_act="gelu",
    )
    if projection:
        kwargs["projection_dim"] = _TEXT_DIM
    return CLIPTextConfig(**kwargs)


def tiny_vae(seed: int | None = None):
    """A real 8x AutoencoderKL (4 blocks, small channels), random weights (seeded when `seed` is given)."""
    from diffusers import AutoencoderKL

    if seed is not None:
        torch.manual_seed(seed)
    return AutoencoderKL(**TINY_VAE_CONFIG)


def _scheduler():
    from diffusers import DDIMScheduler

    return DDIMScheduler(**SD_SCHEDULER_CONFIG)


def _build_sd():
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    unet = UNet2DConditionModel(**TINY_UNET_CONFIGS["tiny-sd"])
    return StableDiffusionPipeline(
        vae=tiny_vae(),
        text_encoder=CLIPTextModel(_text_config(projection=False)).eval(),
        tokenizer=tiny_tokenizer(),
        unet=unet,
        scheduler=_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def _build_sdxl():
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    unet = UNet2DConditionModel(**TINY_UNET_CONFIGS["tiny-sdxl"])
    return StableDiffusionXLPipeline(
        vae=tiny_vae(),
        text_encoder=CLIPTextModel(_text_config(projection=False)).eval(),
        text_encoder_2=CLIPTextModelWithProjection(_text_config(projection=True)).eval(),
        tokenizer=tiny_tokenizer(),
        tokenizer_2=tiny_tokenizer(),
        unet=unet,
        scheduler=_scheduler(),
        force_zeros_for_empty_prompt=True,
        add_watermarker=False,
    )
