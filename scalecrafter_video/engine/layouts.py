"""Where noise-damped CFG may run: the classifier-free-guidance batch layout of a pipeline's UNet calls.

NDCFG rewrites a UNet output [u_main; c_main] as [u_damped; u_damped + c_main - u_main], which
is right only when every CFG call's batch is [uncond; cond]. Pipelines differ (PAG appends a
perturbed branch, InstructPix2Pix orders [cond, image, uncond], guider-based pipelines call the
UNet once per branch), so NDCFG runs only where the layout is known:

- the stock diffusers pipelines in `STOCK_LAYOUTS` (each checked by a test on a tiny pipeline);
- any pipeline class that declares `scalecrafter_batch_layout = "uncond,cond"`;
- a caller's `batch_layout="uncond,cond"` (a bare UNet, or a pipeline the caller vouches for).

A known layout is not enough: each call must also be a CFG call (`cfg_probe`). Where the pipeline
does not say, its [a; b] batch of two prompts without guidance would be damped as [uncond; cond].
"""

from __future__ import annotations

import inspect
import logging
import weakref
from collections.abc import Callable

from .errors import ScaleCrafterError
from .overrides import Override

logger = logging.getLogger(__name__)

UNCOND_COND = "uncond,cond"
LAYOUTS = (UNCOND_COND,)
LAYOUT_ATTRIBUTE = "scalecrafter_batch_layout"
CFG_ARGUMENT = "do_classifier_free_guidance"
STOCK_LAYOUTS: dict[str, str] = {
    "StableDiffusionPipeline": UNCOND_COND,
    "StableDiffusionXLPipeline": UNCOND_COND,
    "StableDiffusionControlNetPipeline": UNCOND_COND,
    "StableDiffusionAdapterPipeline": UNCOND_COND,
    "AnimateDiffPipeline": UNCOND_COND,
    "TextToVideoSDPipeline": UNCOND_COND,
    # the img2img / video-to-video siblings the cascade refines with
    "StableDiffusionImg2ImgPipeline": UNCOND_COND,
    "StableDiffusionXLImg2ImgPipeline": UNCOND_COND,
    "AnimateDiffVideoToVideoPipeline": UNCOND_COND,
    "VideoToVideoSDPipeline": UNCOND_COND,
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
        return (
            "noise-damped CFG is off on this bare UNet: its CFG batch layout is unknown; pass "
            f"batch_layout={UNCOND_COND!r} if every CFG call's batch is [uncond; cond] (re-dilation runs)"
        )
    name = type(pipe).__name__
    return (
        f"noise-damped CFG is off: the CFG batch layout of {name} is unknown (re-dilation runs); if every "
        f"CFG UNet call of it gets [uncond; cond], declare {LAYOUT_ATTRIBUTE} = {UNCOND_COND!r} on the class "
        f"or pass batch_layout={UNCOND_COND!r}"
    )


class _CfgRecorder(Override):
    """`pipe.encode_prompt` wrapped to record the `do_classifier_free_guidance` each pipeline call
    passes it (TextToVideoSDPipeline keeps the flag in a local variable and nowhere else)."""

    __slots__ = ("cfg", "signature")

    def __init__(self, pipe):
        super().__init__(pipe, "encode_prompt")
        self.signature = inspect.signature(pipe.encode_prompt)
        self.cfg: bool | None = None

    def __call__(self, *args, **kwargs):
        if self.live:
            try:
                bound = self.signature.bind(*args, **kwargs)
                bound.apply_defaults()
                self.cfg = bool(bound.arguments[CFG_ARGUMENT])
            except (TypeError, KeyError):
                self.cfg = None
        return self.inner(*args, **kwargs)


class CfgProbe:
    """Whether the UNet call in progress is a CFG call (call it); None from `read` means the
    pipeline did not say, and then NDCFG must not run: False, with one warning. `close()` takes
    off what the probe put on the pipeline."""

    def __init__(self, read: Callable[[], bool | None], unknown: str = "", recorder: _CfgRecorder | None = None):
        self._read, self._unknown = read, unknown
        self._recorder = weakref.ref(recorder) if recorder is not None else None
        self._warned = False

    def __call__(self) -> bool:
        value = self._read()
        if value is None:
            if not self._warned:
                logger.warning("%s", self._unknown)
                self._warned = True
            return False
        return bool(value)

    def close(self) -> None:
        recorder = self._recorder() if self._recorder is not None else None
        if recorder is not None:
            recorder.remove()


def cfg_probe(pipe, cfg: bool | Callable[[], bool] | None) -> CfgProbe:
    """Whether the current UNet call is a CFG call: `cfg` if given, else what the pipeline says:
    its `do_classifier_free_guidance`, else its `_guidance_scale` > 1, else the
    `do_classifier_free_guidance` its call passed to `encode_prompt`; a bare UNet is always CFG.
    Where none of these is known, NDCFG does not run (one warning): with two prompts and guidance
    off, the batch [a; b] looks like [uncond; cond]."""
    if callable(cfg):
        return CfgProbe(cfg)
    if cfg is not None:
        return CfgProbe(lambda: bool(cfg))
    if pipe is None:
        return CfgProbe(lambda: True)
    name = type(pipe).__name__
    unknown = (
        f"noise-damped CFG is off: {name} does not say whether it runs CFG (no "
        f"do_classifier_free_guidance, _guidance_scale or encode_prompt({CFG_ARGUMENT}=...)); pass "
        "cfg=guidance_scale > 1 to apply_scalecrafter"
    )
    recorder = None
    if not hasattr(type(pipe), CFG_ARGUMENT) and CFG_ARGUMENT in _parameters(getattr(pipe, "encode_prompt", None)):
        recorder = _CfgRecorder(pipe)
        recorder.install()
    ref = weakref.ref(pipe)
    recorded = weakref.ref(recorder) if recorder is not None else (lambda: None)

    def read() -> bool | None:
        p = ref()
        if p is None:
            return None
        flag = getattr(p, CFG_ARGUMENT, None)
        if flag is not None:
            return bool(flag)
        scale = getattr(p, "_guidance_scale", None)
        if scale is not None:
            return scale > 1.0
        r = recorded()
        return r.cfg if r is not None else None

    return CfgProbe(read, unknown, recorder)


def _parameters(function) -> set[str]:
    try:
        return set(inspect.signature(function).parameters)
    except (TypeError, ValueError):
        return set()
