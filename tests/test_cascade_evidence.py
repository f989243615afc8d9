"""scripts/cascade_evidence.py on tiny settings (shapes32-motion, 2 clips, 2x): every case's numbers carry
their n and 95 % interval, the upsampled control reads 1.0, cascade cases run through
scalecrafter_video.jobs.cascade (skipped with a note where it cannot be imported), and a rerun resumes."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CASCADE = "scalecrafter_video.jobs.cascade"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("cascade_evidence", ROOT / "scripts" / "cascade_evidence.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(script, out, *args):
    assert (
        script.main(
            ["--models", "shapes32-motion", "--samples", "2", "--scales", "2", "--out", str(out), *map(str, args)]
        )
        == 0
    )
    return json.loads((out / "results.json").read_text(), parse_constant=lambda c: pytest.fail(c))


def test_tiny_run_has_every_number_with_n_and_interval(script, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, CASCADE, None)  # as before the cascade lands: import fails
    doc = _run(script, tmp_path, "--steps", "2")
    runs = doc["runs"]
    assert sorted(runs) == [
        f"shapes32-motion ddim2 {k}" for k in ("1x base", "2x direct", "2x scalecrafter", "2x upsampled")
    ]
    assert any("cascade cases skipped" in n and CASCADE in n for n in doc["notes"])
    for run in runs.values():
        ev = run["evidence"]
        for key in ("single", "repetition", "consistent", "content_kept"):
            assert {"value", "k", "n", "ci95"} <= set(ev[key]), key
        assert ev["single"]["n"] == 16 and ev["repetition"]["n"] == 2 and ev["repetition"]["ci95"] is not None
        for key in ("step_ratio", "net_ratio", "fit_ratio", "color_spread_ratio"):
            assert {"value", "n", "n_base", "ci95", "interval"} <= set(ev[key]), key
        assert run["paired"] == (run["case"] in ("base", "upsampled"))
        assert len(run["per_sample"]["net"]) == 2
    assert runs["shapes32-motion ddim2 2x scalecrafter"]["info"]["plan"]
    base, control = runs["shapes32-motion ddim2 1x base"]["evidence"], runs["shapes32-motion ddim2 2x upsampled"]
    assert control["evidence"]["single"] == base["single"]
    table = (tmp_path / "table.md").read_text()
    assert "| upsampled |" in table and "net ratio" in table
    # a rerun with the same settings skips what is there; other settings are refused
    mtime = (tmp_path / "results.json").stat().st_mtime_ns
    assert _run(script, tmp_path, "--steps", "2")["runs"] == runs
    with pytest.raises(SystemExit, match="pass another --out"):
        _run(script, tmp_path, "--steps", "2", "--seed", "1")
    assert (tmp_path / "results.json").stat().st_mtime_ns == mtime  # neither run rewrote it


def test_control_reads_one_and_cascade_variants_are_discovered(script, tmp_path, monkeypatch):
    calls = []

    def sample_shapes_cascade(
        model, labels, base, height, width, *, steps, guidance, eta, seed, batch, frames, done, restart
    ):
        calls.append((height, width, steps, frames, restart, len(labels)))
        return script.upsample(base, height // base.shape[-2]), {"stages": [32, height], "restart": restart}

    monkeypatch.setattr(script, "CASCADE_VARIANTS", {"r30": {"restart": 0.3}, "r50": {"restart": 0.5}})
    monkeypatch.setattr(script, "sample_shapes_cascade", sample_shapes_cascade)
    # 8 steps: enough for the base clips to hold one object per frame (2 steps draw none)
    doc = _run(script, tmp_path, "--steps", "8", "--cases", "upsampled,cascade:r30")
    assert calls == [(64, 64, 8, 8, 0.3, 2)]
    runs = doc["runs"]
    assert sorted(r["case"] for r in runs.values()) == ["base", "cascade:r30", "upsampled"]
    for case in ("upsampled", "cascade:r30"):
        run = runs[f"shapes32-motion ddim8 2x {case}"]
        ev = run["evidence"]
        assert run["paired"]
        assert ev["followed"] >= 1
        for key in ("step_ratio", "net_ratio", "fit_ratio"):
            assert ev[key]["value"] == pytest.approx(1.0, abs=0.03) and ev[key]["n"] >= 1
        assert ev["color_spread_ratio"]["value"] == pytest.approx(1.0, abs=0.02)
        assert ev["content_kept"]["value"] == 1.0
    assert runs["shapes32-motion ddim8 2x cascade:r30"]["info"]["restart"] == 0.3
    with pytest.raises(SystemExit, match="unknown cascade variant"):
        _run(script, tmp_path / "x", "--steps", "8", "--cases", "cascade:nope")


def test_the_real_cascade_refines_each_base_clip(script, tmp_path):
    """One variant through scalecrafter_video.jobs.cascade itself: clip i grows from base clip i (paired),
    at the target size, with the frame count kept."""
    doc = _run(script, tmp_path, "--steps", "4", "--cases", "cascade:full-r0.3")
    run = doc["runs"]["shapes32-motion ddim4 2x cascade:full-r0.3"]
    assert run["paired"] and run["info"]["unet_calls"] > 0
    assert run["evidence"]["single"]["n"] == 16  # 2 clips x 8 frames


def test_a_stopped_case_resumes_from_its_stored_batches(script, tmp_path, monkeypatch):
    """Stopped after its first batch, a case keeps that batch under DIR/.partial; the rerun samples
    only the rest and measures exactly what an unbroken run measures, then removes the store."""
    args = ("--steps", "2", "--cases", "direct", "--batch", "1")
    whole = _run(script, tmp_path / "whole", *args)["runs"]
    real_run_case, sampled = script.run_case, []

    class StopAfterOne(dict):
        def __init__(self, store):
            super().__init__()
            self.store = store

        def __contains__(self, key):
            return key in self.store

        def __getitem__(self, key):
            return self.store[key]

        def __setitem__(self, key, value):
            self.store[key] = value
            sampled.append(key)
            raise KeyboardInterrupt

    def stopping_run_case(model, case, labels, *, done, **kw):
        if case.method == "direct" and case.scale == 2:
            done = StopAfterOne(done)
        return real_run_case(model, case, labels, done=done, **kw)

    monkeypatch.setattr(script, "run_case", stopping_run_case)
    with pytest.raises(KeyboardInterrupt):
        _run(script, tmp_path / "cut", *args)
    assert sampled == [0] and len(list((tmp_path / "cut" / script.PARTIAL).glob("*/*.npz"))) == 3  # base 2 + 1
    monkeypatch.setattr(script, "run_case", real_run_case)
    resumed = _run(script, tmp_path / "cut", *args)["runs"]
    key = "shapes32-motion ddim2 2x direct"
    assert resumed[key]["info"] == {"reused_from_earlier_runs": 1}
    row = next(line for line in (tmp_path / "cut" / "table.md").read_text().splitlines() if "| direct |" in line)
    assert row.endswith(" + 1 stored |")  # its seconds count only the rerun
    for name in whole:
        assert resumed[name]["per_sample"] == whole[name]["per_sample"], name
        assert resumed[name]["evidence"] == whole[name]["evidence"], name
    assert not (tmp_path / "cut" / script.PARTIAL).exists()


def test_upscale_evidence_runs_scv_upscale_through_files(tmp_path):
    spec = importlib.util.spec_from_file_location("upscale_evidence", ROOT / "scripts" / "upscale_evidence.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--samples", "2", "--steps", "2", "--out", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "results.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    assert list(doc["cases"]) == ["read back", "upscaled"] and doc["settings"]["samples"] == 2
    for case in doc["cases"].values():
        assert case["single"]["n"] == 16 and len(case["single"]["ci95"]) == 2  # 2 clips of 8 frames
    outputs = sorted(p.name for p in (tmp_path / "upscaled").rglob("*.mp4"))
    assert len(outputs) == 2 and all("64x64-upscale" in name for name in outputs)
    assert "| upscaled |" in (tmp_path / "table.md").read_text()
