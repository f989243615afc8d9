"""Tiny, random, offline video pipelines for tests and smoke runs. Their output is NOISE.

Two layouts, both at a 64 px base (latent sample_size 8) with a real 8x VAE (4 blocks), a tiny
CLIP text encoder and a CLIP tokenizer built from an in-memory byte-level vocabulary:

- ``tiny-video``: AnimateDiff layout. A tiny SD-1.5-layout ``UNet2DConditionModel`` plus a tiny
  ``MotionAdapter`` (max sequence length 32, like AnimateDiff v1-5-2), turned into a
  ``UNetMotionModel`` by ``AnimateDiffPipeline``.
- ``tiny-video3d``: ModelScope / Zeroscope layout. A tiny ``UNet3DConditionModel`` (temporal
  Conv3d ``temp_convs`` and temporal attention) through ``TextToVideoSDPipeline``.

Every weight is drawn from a seeded generator, including the layers diffusers initialises to zero
(motion-module and temporal-conv output projections), so the temporal layers really mix frames:
a test that checks "temporal layers untouched" would otherwise compare zeros with zeros.
Nothing here reads the network or the Hugging Face cache.
"""

from __future__ import annotations

import torch

from .tiny import SD_SCHEDULER_CONFIG, tiny_tokenizer, tiny_vae

TINY_VIDEO_MODELS = ("tiny-video", "tiny-video3d")
TINY_BASE_PX = 64  # pixels; latent sample_size 8 with the 8x VAE
TINY_MAX_FRAMES = 32  # the tiny motion adapter's motion_max_seq_length (as AnimateDiff v1-5-2)
TINY_NOTE = "tiny random weights: output is noise, for tests and smoke runs only"

_CH = (32, 32, 64, 64)  # UNet block widths (SD-1.5 layout: 4 levels, 2 resnets per down block)
_TEXT_DIM = 32
# What the AnimateDiff-layout 2D UNet and the UNet3D share (the block types differ).
TINY_VIDEO_UNET_CONFIG: dict = dict(
    sample_size=TINY_BASE_PX // 8,
    in_channels=4,
    out_channels=4,
    layers_per_block=2,
    block_out_channels=_CH,
    cross_attention_dim=_TEXT_DIM,
    attention_head_dim=8,
    norm_num_groups=8,
)


def is_tiny_video(model: str) -> bool:
    return model in TINY_VIDEO_MODELS


def tiny_text_encoder(tokenizer, seed: int = 0):
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    cfg = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=_TEXT_DIM,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModel(cfg).eval()


def tiny_unet2d(seed: int = 0):
    """SD-1.5-layout UNet2DConditionModel (the AnimateDiff base), tiny widths."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(
        **TINY_VIDEO_UNET_CONFIG,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    ).eval()


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


def tiny_unet3d(seed: int = 0):
    """ModelScope-layout UNet3DConditionModel (temp_convs + temporal attention), tiny widths."""
    from diffusers import UNet3DConditionModel

    torch.manual_seed(seed)
    return UNet3DConditionModel(
        **TINY_VIDEO_UNET_CONFIG,
        down_block_types=("CrossAttnDownBlock3D",) * 3 + ("DownBlock3D",),
        up_block_types=("UpBlock3D",) + ("CrossAttnUpBlock3D",) * 3,
    ).eval()


def _fill_zero_weights(module: torch.nn.Module, seed: int, std: float = 0.05) -> None:
    """Give every all-zero weight matrix / kernel a seeded random value (zero-init output
    projections of motion modules and temporal convs would make the temporal path an identity)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _name, p in module.named_parameters():
            if p.dim() >= 2 and not torch.any(p):
                p.copy_(torch.randn(p.shape, generator=g) * std)


def tiny_scheduler():
    from diffusers import DDIMScheduler

    return DDIMScheduler(**SD_SCHEDULER_CONFIG)  # DDIM-50 gives t = 981 - 20 i


def tiny_video_pipeline(name: str, seed: int = 0, dtype: torch.dtype = torch.float32):
    """Build `tiny-video` (AnimateDiffPipeline) or `tiny-video3d` (TextToVideoSDPipeline)."""
    from scalecrafter_video.errors import ScaleCrafterError

    if name not in TINY_VIDEO_MODELS:
        raise ScaleCrafterError(f"unknown tiny video model {name!r}; choose one of {', '.join(TINY_VIDEO_MODELS)}")
    with torch.random.fork_rng(devices=[]):  # seeded weights without touching the caller's RNG
        pipe = _build(name, seed)
    if dtype != torch.float32:
        pipe.to(dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _build(name: str, seed: int):
    tok = tiny_tokenizer()
    text = tiny_text_encoder(tok, seed)
    vae = tiny_vae(seed).eval()
    if name == "tiny-video":
        from diffusers import AnimateDiffPipeline

        pipe = AnimateDiffPipeline(
            vae=vae,
            text_encoder=text,
            tokenizer=tok,
            unet=tiny_unet2d(seed),
            motion_adapter=tiny_motion_adapter(seed),
            scheduler=tiny_scheduler(),
            feature_extractor=None,
            image_encoder=None,
        )
    else:
        from scalecrafter_video.pipelines.video import text_to_video_pipeline_class

        pipe = text_to_video_pipeline_class()(
            vae=vae, text_encoder=text, tokenizer=tok, unet=tiny_unet3d(seed), scheduler=tiny_scheduler()
        )
    _fill_zero_weights(pipe.unet, seed + 7)
    pipe.unet.eval()
    return pipe
