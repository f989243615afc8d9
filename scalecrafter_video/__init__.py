"""ScaleCrafter for diffusers: higher-resolution images and videos from pretrained UNets, no training.

    from scalecrafter_video import apply_scalecrafter, remove_scalecrafter
    apply_scalecrafter(pipe, height=2048, width=2048)   # re-dilation + noise-damped CFG
    image = pipe(prompt, height=2048, width=2048).images[0]
    remove_scalecrafter(pipe)
"""

from .errors import ScaleCrafterError
from .patch import (
    ScaleCrafterHandle,
    apply_attn_sf,
    apply_scalecrafter,
    remove_attn_sf,
    remove_scalecrafter,
    scalecrafter,
)
from .plan import Plan, Rule, derive_plan

__version__ = "0.1.0"

__all__ = [
    "Plan",
    "Rule",
    "ScaleCrafterError",
    "ScaleCrafterHandle",
    "apply_attn_sf",
    "apply_scalecrafter",
    "derive_plan",
    "remove_attn_sf",
    "remove_scalecrafter",
    "scalecrafter",
]
