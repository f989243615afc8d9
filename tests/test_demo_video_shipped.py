"""The shipped motion adapter (scalecrafter_video/demo/assets/shapes32_motion.*), as `scv demo --video`
and `scv generate --model shapes32-motion` load it: a reduced video demo on real trained weights
that must show the direction of the effect (direct sampling at 4x repeats the object in every clip;
the engine's derived plan on the bare motion UNet draws one object that keeps moving; at 2x the
base-guided cascade keeps more of the base clips' motion than plain ScaleCrafter)."""

import numpy as np
import pytest

from scalecrafter_video.commands.demo.run import Case, benchmark
from scalecrafter_video.models.shapes.motion_model import load_motion_model


@pytest.fixture(scope="module")
def shipped():
    return load_motion_model()


def test_the_shipped_adapter_loads_with_its_training_record(shipped):
    cfg = shipped.config
    assert cfg["frames"] == 8 and cfg["weights_dtype"] == "float16" and cfg["image_model"] == "shapes32"
    assert cfg["training"]["device"] == "cpu" and cfg["training"]["train_s"] <= 90 * 60  # the CPU budget


@pytest.mark.slow
def test_reduced_video_demo_shows_the_effect_at_4x(shipped):
    cases = [Case("direct", 1), Case("direct", 4), Case("scalecrafter-redilate", 4)]
    rows, clips = benchmark(shipped, samples=3, steps=10, seed=0, batch=3, cases=cases, frames=4, progress_bar=False)
    base, direct, sc = rows
    assert clips["scalecrafter-redilate 4x"].shape == (3, 4, 128, 128, 3)
    assert base["single"] >= 0.75, rows  # the trained model at its own size
    assert direct["repetition"] >= 0.6, rows
    assert sc["repetition"] <= direct["repetition"] - 0.5 and sc["single"] >= direct["single"] + 0.5, rows
    assert np.isfinite(sc["motion"]) and sc["motion"] > 0, rows  # the object still moves


@pytest.mark.slow
def test_reduced_video_demo_cascade_keeps_more_motion_than_scalecrafter_at_2x(shipped):
    cases = [Case("direct", 1), Case("scalecrafter", 2, ndcfg=True), Case("cascade", 2)]
    rows, clips = benchmark(shipped, samples=3, steps=10, seed=0, batch=3, cases=cases, frames=8, progress_bar=False)
    base, sc, cascade = rows
    assert clips["cascade 2x"].shape == (3, 8, 64, 64, 3)
    assert cascade["motion_ratio"] > sc["motion_ratio"], rows  # the direction the demo's table shows
    assert cascade["single"] >= 0.95 and cascade["repetition"] == 0 and cascade["followed"] == 3, rows
    assert 0.8 <= cascade["net_ratio"] <= 1.2 and 0.8 <= cascade["fit_ratio"] <= 1.2, rows  # the base clips' paths
