"""The demo model: a small class-conditional pixel-space UNet2DConditionModel (32x32, 3 channels).

Class conditioning goes through cross-attention: a learned embedding table (one row per class plus
a final "null" row for classifier-free guidance) gives encoder_hidden_states of shape (B, 1, dim).
Three down levels with the standard diffusers names (down_blocks.i.resnets.j.conv1/2,
down_blocks.i.downsamplers.0.conv, mid_block, up_blocks...), as SDXL has, so the engine's generic
plan rules apply to it exactly as to the real models.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .data import CLASS_NAMES

ASSET_DIR = Path(__file__).resolve().parent / "assets"
WEIGHTS_NAME = "shapes32.safetensors"
CONFIG_NAME = "shapes32.json"

# three levels (32, 16, 8 px at base size), attention (self + class cross-attention) only at the
# deepest level and the mid block: the layout of the "shapes32" family. Chosen by
# scripts/demo_model_sweep.py on a GPU: 4-level variants (deepest level 4x4) stayed at 0-38 % single
# objects at 4x per side under the derived plan, 3-level ones reached 42-77 % (docs/results/demo-images.md,
# samples/demo/sweep/)
UNET_CONFIG = dict(
    sample_size=32,
    in_channels=3,
    out_channels=3,
    down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
    block_out_channels=(16, 32, 64),
    layers_per_block=1,
    cross_attention_dim=64,
    attention_head_dim=4,  # diffusers' legacy name: the number of heads
    norm_num_groups=8,
)
# the same UNet with motion modules (a MotionAdapter, 8-frame clips): the shapes32-motion model
MOTION_UNET_CONFIG = dict(
    {k: v for k, v in UNET_CONFIG.items() if k != "attention_head_dim"},  # UNetMotionModel names it heads
    down_block_types=("DownBlockMotion", "DownBlockMotion", "CrossAttnDownBlockMotion"),
    up_block_types=("CrossAttnUpBlockMotion", "UpBlockMotion", "UpBlockMotion"),
    num_attention_heads=4,
    motion_num_attention_heads=(1, 2, 4),
    motion_max_seq_length=32,
    use_motion_mid_block=True,
)
CONTEXT_DIM = UNET_CONFIG["cross_attention_dim"]

# DDPM training schedule (scaled_linear as SD 1.5/2.1); sample with DDIMScheduler.from_config(SCHEDULER_CONFIG)
# (diffusers defaults: timestep_spacing "leading", steps_offset 1, set_alpha_to_one False -> t_i = 981 - 20 i).
SCHEDULER_CONFIG = dict(
    num_train_timesteps=1000,
    # SD's schedule: the engine's windows (reference DDIM-50 steps, e.g. "dilate while step < 30")
    # were set on SD, so the same steps mean the same noise levels here
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    prediction_type="epsilon",
    clip_sample=True,
    steps_offset=1,
    set_alpha_to_one=False,
    timestep_spacing="leading",
)


class ClassEmbedding(nn.Module):
    """Class id -> cross-attention context (B, 1, dim); id == num_classes is the null class."""

    def __init__(self, num_classes: int = len(CLASS_NAMES), dim: int = CONTEXT_DIM):
        super().__init__()
        self.num_classes = num_classes
        self.table = nn.Embedding(num_classes + 1, dim)
        nn.init.normal_(self.table.weight, std=1.0)

    @property
    def null_id(self) -> int:
        return self.num_classes

    @property
    def device(self) -> torch.device:  # what diffusers pipelines ask of their components
        return self.table.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.table.weight.dtype

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        return self.table(labels)[:, None, :]


def build_unet(config: dict | None = None):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**(config or UNET_CONFIG))


@dataclass
class DemoModel:
    unet: torch.nn.Module
    embed: ClassEmbedding
    config: dict  # the JSON config (unet config, class names, scheduler config, data, training)

    @property
    def class_names(self) -> list[str]:
        return list(self.config["class_names"])

    def context(self, labels: torch.Tensor) -> torch.Tensor:
        return self.embed(labels)


def save_demo_model(
    unet, embed: ClassEmbedding, out_dir: Path, extra: dict | None = None, unet_config: dict | None = None
) -> None:
    """Write EMA weights (float16 safetensors) and the JSON config; `unet_config` is the dict the
    UNet was built from (default UNET_CONFIG), stored so that load_demo_model rebuilds it."""
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {
        f"unet.{k}": v.detach().cpu().to(torch.float16 if v.is_floating_point() else v.dtype).contiguous()
        for k, v in unet.state_dict().items()
    }
    tensors["class_embedding.weight"] = embed.table.weight.detach().cpu().to(torch.float16).contiguous()
    tmp = out_dir / (WEIGHTS_NAME + ".tmp")
    save_file(tensors, str(tmp))
    tmp.replace(out_dir / WEIGHTS_NAME)
    cfg = {
        "unet": {
            k: list(v) if isinstance(v, tuple) else v
            for k, v in dict(unet.config).items()
            if k in (unet_config or UNET_CONFIG)
        },
        "class_names": list(CLASS_NAMES),
        "null_class": len(CLASS_NAMES),
        "context_dim": embed.table.weight.shape[1],
        "scheduler": SCHEDULER_CONFIG,
        "weights_dtype": "float16",
    }
    if extra:
        cfg.update(extra)
    (out_dir / CONFIG_NAME).write_text(json.dumps(cfg, indent=2) + "\n")


def load_demo_model(asset_dir: Path | None = None, dtype=torch.float32) -> DemoModel:
    """Load the shipped checkpoint (weights stored as float16, run as float32 by default)."""
    from safetensors.torch import load_file

    from ...engine.errors import ScaleCrafterError

    asset_dir = Path(asset_dir) if asset_dir else ASSET_DIR
    wpath, cpath = asset_dir / WEIGHTS_NAME, asset_dir / CONFIG_NAME
    if not wpath.exists() or not cpath.exists():
        raise ScaleCrafterError(
            f"demo model not found in {asset_dir}; train it with `python scripts/train_demo_model.py`"
        )
    cfg = json.loads(cpath.read_text())
    unet_cfg = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg["unet"].items()}
    unet = build_unet(unet_cfg)
    embed = ClassEmbedding(len(cfg["class_names"]), cfg["context_dim"])
    tensors = load_file(str(wpath))
    unet.load_state_dict({k[5:]: v.to(dtype) for k, v in tensors.items() if k.startswith("unet.")})
    embed.table.weight.data.copy_(tensors["class_embedding.weight"].to(dtype))
    if dtype != torch.float32:
        unet.to(dtype)
        embed.to(dtype)
    unet.eval().requires_grad_(False)
    embed.eval().requires_grad_(False)
    return DemoModel(unet=unet, embed=embed, config=cfg)
