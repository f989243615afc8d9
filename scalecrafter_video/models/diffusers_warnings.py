"""One diffusers warning that names nothing, dropped where the package casts its own models."""

from __future__ import annotations

import contextlib

EMPTY_FP32_WARNING = "should be kept in float32: []"


@contextlib.contextmanager
def quiet_empty_fp32_warning():
    """diffusers' ModelMixin.to warns "There are modules in <Model> that should be kept in float32:
    []. Casting directly with `to()` ..." on every dtype cast, even when that list is empty (e.g.
    UNetMotionModel, MotionAdapter, AutoencoderKL): a line per component that asks nothing of the
    user. Inside this block that one message is dropped; every other warning passes."""
    from diffusers.models import modeling_utils

    def drop(record) -> bool:
        return EMPTY_FP32_WARNING not in record.getMessage()

    modeling_utils.logger.addFilter(drop)
    try:
        yield
    finally:
        modeling_utils.logger.removeFilter(drop)
