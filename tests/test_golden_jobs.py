"""One image job and one video job give the same output names and the same sidecars (every field but
the run's time, date, versions and command line) as before the job runner was shared: recorded in
tests/data/golden_jobs.json from `scv generate` on tiny-sd / tiny-video, seed 3, 2 steps, 128x128 (the
image's pixels with one CPU thread, as the tests run)."""

import hashlib
import json
from pathlib import Path

import numpy as np
from PIL import Image

GOLDEN = json.loads((Path(__file__).parent / "data" / "golden_jobs.json").read_text(encoding="utf-8"))
VOLATILE = ("seconds", "created", "versions", "command")


def _run(scv, out, *args):
    code, stdout, err = scv(
        "generate", *args, "--res", "128x128", "--steps", 2, "--seed", 3, "--no-progress", "--out", out
    )
    assert code == 0, err
    (path,) = [Path(line) for line in stdout.split()]
    side = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    return path, {k: v for k, v in side.items() if k not in VOLATILE}


def test_image_job_names_and_sidecar_unchanged(scv, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path, side = _run(scv, "img", "--model", "tiny-sd")
    assert path.stem == GOLDEN["img"]["name"]
    assert list(side) == list(GOLDEN["img"]["sidecar"])  # the key order too: sidecars are read by people
    assert side == GOLDEN["img"]["sidecar"]
    pixels = np.asarray(Image.open(path))
    assert hashlib.sha256(pixels.tobytes()).hexdigest() == GOLDEN["img"]["pixels_sha256"]


def test_video_job_names_and_sidecar_unchanged(scv, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path, side = _run(scv, "vid", "--video", "--model", "tiny-video", "--frames", 4)
    assert path.stem == GOLDEN["vid"]["name"]
    assert list(side) == list(GOLDEN["vid"]["sidecar"])
    assert side == GOLDEN["vid"]["sidecar"]
