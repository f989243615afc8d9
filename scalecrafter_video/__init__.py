"""ScaleCrafter for diffusers: higher-resolution images and videos from pretrained UNets, no training.

    from scalecrafter_video import apply_scalecrafter, remove_scalecrafter
    apply_scalecrafter(pipe, height=2048, width=2048)   # re-dilation + noise-damped CFG
    image = pipe(prompt, height=2048, width=2048).images[0]
    remove_scalecrafter(pipe)

Names load lazily, so `scv --help` does not pay for importing torch.
"""

from importlib import import_module, metadata

from .engine.errors import ScaleCrafterError

try:
    __version__ = metadata.version("scalecrafter_video")
except metadata.PackageNotFoundError:  # a checkout on sys.path, not installed
    __version__ = "unknown"

_LAZY = {
    "ScaleCrafterHandle": "engine.patch",
    "apply_attn_sf": "engine.baselines",
    "apply_scalecrafter": "engine.patch",
    "remove_attn_sf": "engine.baselines",
    "remove_scalecrafter": "engine.patch",
    "scalecrafter": "engine.patch",
    "Plan": "engine.plan",
    "Rule": "engine.plan",
    "derive_plan": "engine.plan",
    "cascade": "jobs.cascade",
    "CascadeResult": "jobs.cascade",
}

__all__ = ["ScaleCrafterError", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
