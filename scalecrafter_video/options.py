"""What one `scv generate` job asks for, shared by the image and video front ends."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class GenerateOptions:
    """One generation job. Sizes are in pixels; `None` means "the model family's default"."""

    prompts: list[str]
    height: int
    width: int
    model: str = "sd15"
    family: str | None = None  # the preset family; None: from the model id or the UNet's architecture
    negative_prompt: str | None = None
    method: str = "scalecrafter"  # scalecrafter | direct | attn-sf
    preset: str = "auto"  # a preset name, a path to a preset file, or "auto"
    ndcfg: bool = True  # noise-damped CFG where the plan has a damped window
    dispersion: bool = False  # dispersed convolution where the plan lists dispersion layers
    progressive: bool | None = None  # None: the plan's own decay; False: hold factors for the whole window
    steps: int = 50
    guidance: float | None = None
    eta: float = 1.0
    scheduler: str = "ddim"
    seed: int = 0
    num_per_prompt: int = 1
    out_dir: Path = field(default_factory=lambda: Path("outputs"))
    overwrite: bool = False
    dtype: str = "auto"  # auto | float32 | float16 | bfloat16
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    freeu: bool = False
    vae_tiling: str = "auto"  # auto | on | off
    progress: bool = True
    command: list[str] | None = None  # the command line that asked for this job (for sidecars)
    # video only
    video: bool = False
    frames: int = 16
    fps: int = 8
    motion_adapter: str | None = None
    save_frames: bool = False
    compare: bool = False
