"""`scv demo --video` end to end on a reduced run (an adapter with random output projections, so the
frames interact): MP4 per case, contact sheet, table, JSON with the issue's fields; clear errors."""

import json

import pytest

from scalecrafter_video.models.shapes.motion_model import (
    ADAPTER_CONFIG,
    motion_config,
    save_motion_adapter,
)


@pytest.fixture(scope="module")
def adapter_file(tmp_path_factory, interacting_motion_unet):
    path = tmp_path_factory.mktemp("adapter") / "random.safetensors"
    return save_motion_adapter(
        interacting_motion_unet, path, motion_config(ADAPTER_CONFIG, 8, {"note": "random, for tests"})
    )


@pytest.mark.slow
def test_reduced_video_demo_writes_everything(scv, tmp_path, adapter_file):
    from scalecrafter_video.outputs.media import read_video

    out, js = tmp_path / "out", tmp_path / "demo.json"
    code, stdout, err = scv(
        "demo",
        "--video",
        "--motion-model",
        adapter_file,
        "--samples",
        "2",
        "--steps",
        "2",
        "--frames",
        "3",
        "--scales",
        "2",
        "--out",
        out,
        "--json",
        js,
        "--no-progress",
    )
    assert code == 0, err
    assert "| direct | 1x |" in stdout and "| scalecrafter | 2x |" in stdout and "| cascade | 2x |" in stdout
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "attn-sf-2x.mp4",
        "cascade-2x.mp4",
        "contact_sheet.png",
        "direct-1x.mp4",
        "direct-2x.mp4",
        "results.json",
        "scalecrafter-2x.mp4",
        "table.md",
    ]
    video = read_video(out / "scalecrafter-2x.mp4")
    assert video.shape == (3, 128, 2 * 128 + 4, 3)  # 3 frames; the 2 clips side by side at 128 px
    doc = json.loads(js.read_text(), parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))
    assert [c["method"] for c in doc["cases"]] == ["direct", "direct", "attn-sf", "scalecrafter", "cascade"]
    for case in doc["cases"]:
        keys = {"method", "scale", "single", "repetition", "consistent", "motion_ratio", "net_ratio", "fit_ratio"}
        assert keys | {"followed", "clean"} <= set(case)
        assert "per_sample" not in case
    base = doc["cases"][0]  # motion ratio 1 by definition, or null where no clip had an object to follow
    assert (base["motion"] is None and base["motion_ratio"] is None) or base["motion_ratio"] == pytest.approx(1.0)
    assert doc["samples"] == 2 and doc["frames"] == 3
    full = json.loads((out / "results.json").read_text())
    assert len(full["cases"][0]["per_sample"]) == 2
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    code, _, err = scv(
        "demo",
        "--video",
        "--motion-model",
        adapter_file,
        "--frames",
        "3",
        "--scales",
        "2",
        "--out",
        out,
        "--no-progress",
    )
    assert code == 2 and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


def test_missing_adapter_and_bad_frames_are_one_line_errors(scv, tmp_path, adapter_file):
    code, _, err = scv("demo", "--video", "--motion-model", tmp_path / "none", "--out", tmp_path / "o")
    assert code == 2 and "motion model not found" in err and "train it with" in err
    assert len(err.strip().splitlines()) == 1
    code, _, err = scv("demo", "--video", "--motion-model", adapter_file, "--frames", "40", "--out", tmp_path / "o")
    assert code == 2 and "--frames must be 1-32" in err
    assert not (tmp_path / "o").exists()
