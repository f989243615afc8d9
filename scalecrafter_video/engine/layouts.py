"""Where noise-damped CFG may run: the classifier-free-guidance batch layout of a pipeline's UNet calls.

NDCFG rewrites a UNet output [u_main; c_main] as [u_damped; u_damped + c_main - u_main], which
is right only when every CFG call's batch is [uncond; cond]. Pipelines differ (PAG appends a
perturbed branch, InstructPix2Pix orders [cond, image, uncond], guider-based pipelines call the
UNet once per branch), so NDCFG runs only where the layout is known:

- the stock diffusers pipelines in `STOCK_LAYOUTS` (each checked by a test on a tiny pipeline);
- any pipeline class that declares `scalecrafter_batch_layout = "uncond,cond"`;
- a caller's `batch_layout="uncond,cond"` (a bare UNet, or a pipeline the caller vouches for).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable

from .errors import ScaleCrafterError

logger = logging.getLogger(__name__)

UNCOND_COND = "uncond,cond"
LAYOUTS = (UNCOND_COND,)
LAYOUT_ATTRIBUTE = "scalecrafter_batch_layout"
STOCK_LAYOUTS: dict[str, str] = {
    "StableDiffusionPipeline": UNCOND_COND,
    "StableDiffusionXLPipeline": UNCOND_COND,
    "AnimateDiffPipeline": UNCOND_COND,
    "TextToVideoSDPipeline": UNCOND_COND,
}


def _checked(layout: str, where: str) -> str:
    if layout not in LAYOUTS:
        raise ScaleCrafterError(f"{where}: unknown CFG batch layout {layout!r}; supported: {', '.join(LAYOUTS)}")
    return layout


def batch_layout(pipe, declared: str | None = None) -> str | None:
    """The CFG batch layout of `pipe`'s UNet calls (None: unknown; NDCFG must not run)."""
    if declared is not None:
        return _checked(declared, "batch_layout")
    if pipe is None:
        return None
    cls = type(pipe)
    attribute = getattr(cls, LAYOUT_ATTRIBUTE, None)
    if attribute is not None:
        return _checked(attribute, f"{cls.__name__}.{LAYOUT_ATTRIBUTE}")
    if cls.__module__.startswith("diffusers.") and cls.__name__ in STOCK_LAYOUTS:
        return STOCK_LAYOUTS[cls.__name__]
    return None


def unknown_layout_warning(pipe) -> str:
    if pipe is None:
        return ("noise-damped CFG is off on this bare UNet: its CFG batch layout is unknown; pass "
                f"batch_layout={UNCOND_COND!r} if every CFG call's batch is [uncond; cond] (re-dilation runs)")
    name = type(pipe).__name__
    return (f"noise-damped CFG is off: the CFG batch layout of {name} is unknown (re-dilation runs); if every "
            f"CFG UNet call of it gets [uncond; cond], declare {LAYOUT_ATTRIBUTE} = {UNCOND_COND!r} on the class "
            f"or pass batch_layout={UNCOND_COND!r}")


def cfg_probe(pipe, cfg: bool | Callable[[], bool] | None) -> Callable[[], bool]:
    """Whether the current UNet call is a CFG call: `cfg` if given, else the pipeline's own
    `do_classifier_free_guidance` (or guidance scale > 1); a bare UNet is always CFG."""
    if callable(cfg):
        return cfg
    if cfg is not None:
        return lambda: bool(cfg)
    if pipe is None:
        return lambda: True
    if not hasattr(type(pipe), "do_classifier_free_guidance"):
        logger.warning(
            "%s does not say whether it runs CFG; NDCFG assumes every even batch is [uncond; cond]: "
            "pass cfg=guidance_scale > 1 to apply_scalecrafter to be sure",
            type(pipe).__name__,
        )
    ref = weakref.ref(pipe)

    def probe() -> bool:
        p = ref()
        if p is None:
            return True
        flag = getattr(p, "do_classifier_free_guidance", None)
        if flag is not None:
            return bool(flag)
        scale = getattr(p, "_guidance_scale", None)
        return True if scale is None else scale > 1.0

    return probe
