"""Shared test setup: offline hub, one CPU thread, tiny pipelines built once per session."""

import os
import sys
from pathlib import Path

# Before anything imports huggingface_hub: its constants read the environment once.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_sd():
    """The tiny-sd pipeline (random SD1.5 layout, 64 px base), built once; tests must leave it unpatched."""
    from scalecrafter_video.models.tiny import tiny_pipeline

    return tiny_pipeline("tiny-sd")


@pytest.fixture(scope="session")
def tiny_sdxl():
    from scalecrafter_video.models.tiny import tiny_pipeline

    return tiny_pipeline("tiny-sdxl")


@pytest.fixture(scope="session")
def tiny_video():
    """The tiny-video pipeline (AnimateDiff layout, seed 0), built once; tests must leave it unpatched."""
    from scalecrafter_video.models.tiny import tiny_pipeline

    return tiny_pipeline("tiny-video")


@pytest.fixture(scope="session")
def tiny_video3d():
    """The tiny-video3d pipeline (UNet3D layout, seed 0), built once; tests must leave it unpatched."""
    from scalecrafter_video.models.tiny import tiny_pipeline

    return tiny_pipeline("tiny-video3d")


@pytest.fixture(scope="session")
def bare_unet():
    """helpers.tiny_unet(): the bare SD-1.5-layout UNet of the engine tests, built once. Tests must
    leave it unpatched with its weights; one that changes weights builds its own tiny_unet()."""
    from helpers import tiny_unet

    return tiny_unet()


@pytest.fixture
def scv(capsys):
    """Run `scv` in-process: scv("generate", ...) -> (exit code, stdout, stderr)."""
    from scalecrafter_video.commands.cli import main

    def run(*argv):
        code = main([str(a) for a in argv])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.fixture
def empty_hf_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache, so "missing model" tests never find a real download."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture(scope="session")
def interacting_motion_unet():
    """shapes32 + a motion adapter with seeded random output projections (a fresh adapter's are
    zero, which makes the motion model the image model per frame): frames really interact."""
    from scalecrafter_video.models.shapes.model import load_demo_model
    from scalecrafter_video.models.shapes.motion_model import (
        assemble,
        build_motion_adapter,
    )

    adapter = build_motion_adapter(seed=3)
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for name, p in adapter.named_parameters():
            if "proj_out" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return assemble(load_demo_model().unet, adapter).eval().requires_grad_(False)


@pytest.fixture
def no_weights_or_network(monkeypatch):
    """Fail the test if the code under test loads a pipeline or probes the hub: what "fails fast"
    means here, checked without a clock (timings flake on a loaded machine)."""
    from scalecrafter_video.jobs import image, loading, video

    def forbidden(*args, **kwargs):
        raise AssertionError("a pipeline was loaded or the hub probed")

    monkeypatch.setattr(image, "load_pipeline", forbidden)
    monkeypatch.setattr(loading, "hub_reachable", forbidden)
    monkeypatch.setattr(video, "load_video_pipeline", forbidden)


@pytest.hookimpl(tryfirst=True)  # before -k / -m deselect: the order is the same whatever they keep
def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (scripts/test.sh: `-n 2 --dist loadfile --no-loadscope-reorder`) the files with
    slow tests go first, so that no file of several minutes starts last while the other worker idles.
    Every worker sorts the same collection the same way; a run in one process keeps the file order."""
    if not hasattr(config, "workerinput"):
        return
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)  # stable: file and test order kept otherwise
