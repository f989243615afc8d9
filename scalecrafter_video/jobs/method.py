"""The job's method around each sampling call: direct, the Attn-SF baseline, or ScaleCrafter."""

from __future__ import annotations

import logging
from typing import Any

from ..engine.baselines import apply_attn_sf, remove_attn_sf
from ..engine.patch import apply_scalecrafter
from ..engine.plan import Plan, idle_notice
from .options import GenerateOptions

logger = logging.getLogger(__name__)


class MethodContext:
    """The job's method around a sampling call: `with method as fields:` applies direct sampling,
    the Attn-SF baseline or ScaleCrafter to the pipeline, and leaving takes it off (in `finally`,
    Ctrl-C too). `fields` are the sidecar's: the plan, and once the block is left, what ran
    (`unet_calls`, `damped_passes`). The "nothing to do" notice is said once per context.

    `preset`, `family`, `base` and `cfg` go to the engine as the front end decides them."""

    def __init__(
        self,
        pipe,
        opts: GenerateOptions,
        *,
        preset: str | Plan,
        family: str | None = None,
        base: tuple[int, int] | None = None,
        cfg: bool | None = None,
    ):
        self.pipe, self.opts, self.preset, self.cfg = pipe, opts, preset, cfg
        self.where: dict[str, Any] = {"family": family, **({"base": base} if base is not None else {})}
        self.handle = None
        self.fields: dict[str, Any] = {"plan": None}
        self.noticed = False

    def check(self) -> None:
        """Resolve and validate the ScaleCrafter plan (main, damped and dispersion layers alike) and
        take it off again, so plan mistakes surface before anything is sampled or written."""
        if self.opts.method == "scalecrafter":
            self._apply(ndcfg=False).remove()

    def _apply(self, ndcfg: bool):
        opts = self.opts
        return apply_scalecrafter(
            self.pipe,
            height=opts.height,
            width=opts.width,
            preset=self.preset,
            ndcfg=ndcfg,
            dispersion=opts.dispersion,
            progressive=opts.progressive,
            cfg=self.cfg,
            max_scale=opts.max_scale,
            **self.where,
        )

    def __enter__(self) -> dict[str, Any]:
        opts = self.opts
        self.fields = {"plan": None}
        if opts.method == "scalecrafter":
            self.handle = handle = self._apply(opts.ndcfg)
            self.fields = {
                "plan": handle.plan.to_dict(),
                "patched_convs": handle.patched_convs,
                "ndcfg_layout": handle.ndcfg_layout,
            }
            notice = None if self.noticed else idle_notice(handle.plan)
            if notice:
                logger.warning("%s", notice)
            self.noticed = True
        elif opts.method == "attn-sf":
            layers = apply_attn_sf(self.pipe, height=opts.height, width=opts.width, **self.where)
            self.fields = {"plan": None, "attn_sf_layers": layers}
        return self.fields

    def __exit__(self, *exc) -> bool:
        if self.handle is not None:
            self.handle.remove()
            self.fields.update(unet_calls=self.handle.unet_calls, damped_passes=self.handle.damped_passes)
            self.handle = None
        remove_attn_sf(self.pipe)
        return False
