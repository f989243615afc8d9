"""`scv eval` on videos, offline: FID/KID over every frame, the video demo's clip metrics
(consistency, motion ratio) against the same model's base-size clips, lossless saved frames read in
preference to the H.264 MP4, and the frame PNGs never counted as generated images."""

import json

import numpy as np
import pytest
import torch

from scalecrafter_video.models.shapes.data import CLASS_NAMES, make_clips
from scalecrafter_video.outputs.media import frames_dir_of, write_mp4, write_png_frames

N, FRAMES = 6, 8


def _clips(seed):
    clips, labels = make_clips(N, torch.Generator().manual_seed(seed), FRAMES)
    x = ((clips + 1) / 2).permute(0, 2, 3, 4, 1).numpy()  # (n, frames, H, W, 3) in [0, 1]
    return np.rint(x * 255).astype(np.uint8), [CLASS_NAMES[int(k)] for k in labels]


def _write_clips(folder, clips, prompts, method, size, base=False, save_frames=True):
    folder.mkdir(parents=True, exist_ok=True)
    for i, (clip, prompt) in enumerate(zip(clips, prompts, strict=True)):
        path = folder / f"{method}-{size}-{i:03d}.mp4"
        if save_frames:
            write_png_frames(frames_dir_of(path), clip)
        write_mp4(path, clip, 8)
        path.with_suffix(".json").write_text(
            json.dumps(
                {
                    "method": method,
                    "width": size,
                    "height": size,
                    "model": "shapes-video-test",
                    "base": base,
                    "base_size": [32, 32],
                    "prompt": prompt,
                    "kind": "video",
                }
            )
        )


@pytest.fixture(scope="module")
def clip_outputs(tmp_path_factory):
    """Base-size moving shapes; at 64 px "direct" tiles each clip 2x2 (four copies in every frame),
    "scalecrafter" is the same clips upscaled 2x (one object, twice the size, moving twice the pixels)."""
    root = tmp_path_factory.mktemp("clips-out")
    base, prompts = _clips(1)
    _write_clips(root / "base", base, prompts, "direct", 32, base=True)
    _write_clips(root / "direct", [np.tile(c, (1, 2, 2, 1)) for c in base], prompts, "direct", 64)
    _write_clips(
        root / "scalecrafter", [c.repeat(2, axis=1).repeat(2, axis=2) for c in base], prompts, "scalecrafter", 64
    )
    return root


def test_eval_scores_clips_per_frame_and_per_clip(scv, clip_outputs, tmp_path):
    report = tmp_path / "eval.json"
    code, stdout, err = scv(
        "eval",
        "--generated",
        clip_outputs,
        "--reference-shapes",
        "--features",
        "random",
        "--num-reference",
        64,
        "--json",
        report,
        "--plot",
        tmp_path / "eval.png",
        "--no-progress",
    )
    assert code == 0, err
    rows = {(r["method"], r["res"]): r for r in json.loads(report.read_text())["rows"]}
    assert set(rows) == {("direct", "32x32"), ("direct", "64x64"), ("scalecrafter", "64x64")}  # frame PNGs skipped
    for r in rows.values():
        assert r["video"] and r["n"] == N and r["frames"] == N * FRAMES and r["frames_from"] == "png"
        assert r["fid_r"] is not None and r["kid_r"] is not None
    base, direct, sc = rows["direct", "32x32"], rows["direct", "64x64"], rows["scalecrafter", "64x64"]
    assert base["base"] and base["consistent"] == 1 and base["single"] == 1 and base["motion_ratio"] == 1
    assert base["class_match"] == 1  # every clip's object has the class its prompt asked for
    # upscaled clips: the object and its path are twice as large, so motion in base pixels is kept
    assert sc["consistent"] == 1 and sc["repetition"] == 0 and sc["motion_ratio"] == pytest.approx(1, abs=0.05)
    # tiled clips: copies in every frame, so no frame has one object to follow
    assert direct["repetition"] == 1 and direct["single"] == 0 and direct["motion_ratio"] is None
    assert direct["fid_b"] is not None and sc["fid_b"] is not None and base["fid_b"] is None
    assert "| frames |" in stdout and "consistent" in stdout and "motion (base = 1)" in stdout
    assert "lossless PNG frames" in stdout


def test_eval_reads_the_mp4_when_no_frames_were_saved(scv, tmp_path):
    clips, prompts = _clips(2)
    _write_clips(tmp_path / "out", clips[:3], prompts[:3], "direct", 32, base=True, save_frames=False)
    report = tmp_path / "eval.json"
    code, stdout, err = scv(
        "eval",
        "--generated",
        tmp_path / "out",
        "--reference-shapes",
        "--features",
        "random",
        "--num-reference",
        16,
        "--json",
        report,
        "--no-progress",
    )
    assert code == 0, err
    (row,) = json.loads(report.read_text())["rows"]
    assert row["frames_from"] == "mp4" and row["frames"] == 3 * FRAMES
    assert "decoded MP4s" in stdout


def test_eval_unreadable_video_is_a_one_line_error(scv, tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "clip.mp4").write_bytes(b"not a video")
    (folder / "clip.json").write_text(json.dumps({"method": "direct", "width": 32, "height": 32}))
    code, _, err = scv("eval", "--generated", folder, "--features", "random", "--no-progress")
    assert code == 2 and "cannot read video" in err and "clip.mp4" in err and len(err.strip().splitlines()) == 1
