"""The demo's video model: the shipped shapes32 UNet, frozen, plus AnimateDiff motion modules.

Built the way AnimateDiff is: a diffusers `MotionAdapter` sized for shapes32 (three levels of
16/32/64 channels, one motion module per resnet, one in the mid block) and
`UNetMotionModel.from_unet2d(unet, adapter)`. The spatial weights are copied bit for bit from the
shipped checkpoint and never train; only the motion modules do. Every motion module's output
projection starts at zero (AnimateDiff's zero initialisation), so an untrained adapter gives
exactly the image model applied frame by frame.

Only the adapter is stored: float16 safetensors whose metadata holds the JSON config (adapter
config, the frame count trained on, the SHA-256 of the shapes32 weights it was trained on, the
training record), plus the same JSON beside it for people to read.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from ..diffusers_warnings import quiet_empty_fp32_warning
from .data import FRAMES
from .model import ASSET_DIR, WEIGHTS_NAME, ClassEmbedding, load_demo_model

logger = logging.getLogger(__name__)

MOTION_WEIGHTS_NAME = "shapes32_motion.safetensors"
MOTION_CONFIG_NAME = "shapes32_motion.json"
CONFIG_KEY = "scv_motion_config"  # safetensors metadata key holding the JSON config

ADAPTER_CONFIG = dict(
    block_out_channels=(16, 32, 64),  # shapes32's levels
    motion_layers_per_block=1,  # shapes32's layers_per_block (from_unet2d requires the match)
    # head width 16 at every level: on a CPU, 4 heads everywhere costs about 30 % more per training
    # step (many tiny 8-frame attentions at 32x32)
    motion_num_attention_heads=(1, 2, 4),
    motion_norm_num_groups=8,
    motion_max_seq_length=32,
    use_motion_mid_block=True,
)


def build_motion_adapter(config: dict | None = None, seed: int = 0):
    """A fresh MotionAdapter with zero output projections (the video model starts as the image model)."""
    from diffusers import MotionAdapter

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        adapter = MotionAdapter(**(config or ADAPTER_CONFIG))
    with torch.no_grad():
        for name, module in adapter.named_modules():
            if name.endswith("proj_out"):
                module.weight.zero_()
                module.bias.zero_()
    return adapter


def is_motion_parameter(name: str) -> bool:
    return ".motion_modules." in f".{name}"


def assemble(unet2d: torch.nn.Module, adapter) -> torch.nn.Module:
    """UNetMotionModel from the image UNet and the adapter; spatial weights frozen, motion modules
    trainable (call .requires_grad_(False) on the result for inference)."""
    from diffusers import UNetMotionModel

    with quiet_empty_fp32_warning():
        unet = UNetMotionModel.from_unet2d(unet2d, adapter)
    for name, p in unet.named_parameters():
        p.requires_grad_(is_motion_parameter(name))
    return unet


def motion_state(unet: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The motion-module weights of a UNetMotionModel under the MotionAdapter's own names."""
    return {k: v for k, v in unet.state_dict().items() if is_motion_parameter(k)}


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@dataclass
class DemoVideoModel:
    unet: torch.nn.Module  # UNetMotionModel
    embed: ClassEmbedding
    config: dict  # the adapter's JSON config
    image_config: dict  # the shapes32 JSON config (class names, scheduler)

    @property
    def class_names(self) -> list[str]:
        return list(self.image_config["class_names"])


def motion_config(adapter_config: dict, frames: int = FRAMES, extra: dict | None = None) -> dict:
    cfg = {
        "adapter": {k: list(v) if isinstance(v, tuple) else v for k, v in adapter_config.items()},
        "frames": frames,
        "image_model": "shapes32",
        "image_weights_sha256": file_sha256(ASSET_DIR / WEIGHTS_NAME),
        "weights_dtype": "float16",
    }
    cfg.update(extra or {})
    return cfg


def save_motion_adapter(unet: torch.nn.Module, path: Path, config: dict, *, write_json: bool = True) -> Path:
    """Write the motion modules of `unet` as float16 safetensors at `path` (a file, or a folder that
    gets MOTION_WEIGHTS_NAME) with `config` in the metadata, atomically; and the JSON beside it."""
    from safetensors.torch import save

    from ...outputs.files import atomic_write, atomic_write_text

    path = Path(path)
    if path.suffix != ".safetensors":
        path = path / MOTION_WEIGHTS_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().to(torch.float16).contiguous() for k, v in motion_state(unet).items()}
    text = json.dumps(config, indent=2) + "\n"
    data = save(tensors, metadata={CONFIG_KEY: text})  # bytes: safetensors' own file writer forces mode 0600
    atomic_write(path, lambda tmp: tmp.write_bytes(data))
    if write_json:
        atomic_write_text(path.with_suffix(".json"), text)
    return path


def read_motion_config(path: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if CONFIG_KEY not in meta:
        from ...engine.errors import ScaleCrafterError

        raise ScaleCrafterError(f"{path} holds no scv motion config; it is not a shapes32 motion adapter")
    return json.loads(meta[CONFIG_KEY])


def load_motion_model(path: Path | None = None, dtype=torch.float32) -> DemoVideoModel:
    """The shipped shapes32 UNet + the motion adapter at `path` (a .safetensors file or a folder
    holding MOTION_WEIGHTS_NAME; default: the package's assets), frozen, in eval mode."""
    from safetensors.torch import load_file

    from ...engine.errors import ScaleCrafterError

    path = Path(path) if path else ASSET_DIR
    if path.suffix != ".safetensors":
        path = path / MOTION_WEIGHTS_NAME
    if not path.exists():
        raise ScaleCrafterError(
            f"motion model not found at {path}; train it with `python scripts/train_motion_model.py`"
        )
    cfg = read_motion_config(path)
    image = load_demo_model()
    if cfg.get("image_weights_sha256") not in (None, file_sha256(ASSET_DIR / WEIGHTS_NAME)):
        logger.warning("%s was trained on other shapes32 weights than the installed ones", path)
    adapter_cfg = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg["adapter"].items()}
    unet = assemble(image.unet, build_motion_adapter(adapter_cfg))
    tensors = load_file(str(path))
    missing = set(motion_state(unet)) - set(tensors)
    if missing or len(tensors) != len(motion_state(unet)):
        raise ScaleCrafterError(f"{path} does not match its adapter config ({len(missing)} motion weights missing)")
    unet.load_state_dict({k: v.to(torch.float32) for k, v in tensors.items()}, strict=False)
    with quiet_empty_fp32_warning():
        unet.to(dtype).eval().requires_grad_(False)
    image.embed.to(dtype)
    return DemoVideoModel(unet=unet, embed=image.embed, config=cfg, image_config=image.config)
