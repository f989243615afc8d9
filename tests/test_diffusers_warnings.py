"""diffusers warns "There are modules in <Model> that should be kept in float32: []" on every dtype
cast, naming no module. The package's own casts (built-in pipelines, the shipped motion model,
benchmark pipelines) must not print it; every other warning must still pass."""

import logging

import pytest
import torch
from diffusers.models import modeling_utils

from scalecrafter_video.jobs.loading import build_builtin
from scalecrafter_video.jobs.registry import resolve_model
from scalecrafter_video.models.diffusers_warnings import quiet_empty_fp32_warning
from scalecrafter_video.models.shapes.motion_model import load_motion_model


@pytest.fixture
def diffusers_messages():
    """The messages diffusers' modeling_utils logger emits, at its default WARNING level."""
    seen = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    logger = modeling_utils.logger
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)  # diffusers' default (another test may have quietened it)
    yield seen
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_only_the_empty_list_message_is_dropped(diffusers_messages):
    with quiet_empty_fp32_warning():
        modeling_utils.logger.warning("There are modules in X that should be kept in float32: [].")
        modeling_utils.logger.warning("There are modules in X that should be kept in float32: ['norm'].")
        modeling_utils.logger.warning("another warning")
    modeling_utils.logger.warning("There are modules in X that should be kept in float32: [].")
    assert diffusers_messages == [
        "There are modules in X that should be kept in float32: ['norm'].",
        "another warning",
        "There are modules in X that should be kept in float32: [].",
    ]


def test_loading_the_shipped_motion_model_is_quiet(diffusers_messages):
    for dtype in (torch.float32, torch.float16):
        assert next(load_motion_model(dtype=dtype).unet.parameters()).dtype == dtype
    assert not any("float32" in m for m in diffusers_messages)


def test_building_the_tiny_video_pipeline_is_quiet(diffusers_messages):
    """It printed the message for UNetMotionModel, MotionAdapter and AutoencoderKL."""
    pipe = build_builtin(resolve_model("tiny-video", video=True), "cpu", torch.float32)
    assert pipe.unet.dtype == torch.float32
    assert not any("float32" in m for m in diffusers_messages)
