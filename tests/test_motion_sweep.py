"""scripts/motion_model_sweep.py on the CPU with tiny settings: trains, evaluates, and leaves at most
8 files (one adapter per variant, results.json, log.txt) in one flat folder."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "motion_model_sweep.py"


def _run(*args, timeout=600):
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


@pytest.mark.slow
def test_tiny_sweep_trains_scores_and_writes_few_files(tmp_path):
    from scalecrafter_video.models.shapes.motion_model import load_motion_model

    out = tmp_path / "sweep"
    r = _run(
        "--device",
        "cpu",
        "--minutes",
        "0.005",
        "--variants",
        "b4-lr2e-3",
        "--threads",
        "1",
        "--frames",
        "2",
        "--probe-every",
        "1",
        "--probe-clips",
        "1",
        "--probe-steps",
        "1",
        "--eval-clips",
        "1",
        "--eval-steps",
        "1",
        "--scales",
        "2",
        "--out",
        out,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    files = sorted(p.name for p in out.rglob("*"))
    assert files == ["b4-lr2e-3.safetensors", "log.txt", "results.json"]
    assert all(p.stat().st_size <= 16 * 1024 * 1024 for p in out.iterdir())
    doc = json.loads((out / "results.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    (variant,) = doc["variants"]
    assert "error" not in variant, variant
    assert [(row["method"], row["scale"]) for row in variant["rows"]] == [
        ("direct", 1),
        ("direct", 2),
        ("scalecrafter", 2),
    ]
    assert variant["training"]["probes"][0]["step"] == 0 and "b4-lr2e-3 |" in doc["summary"]
    log = (out / "log.txt").read_text().splitlines()
    assert log and all(line.startswith("[b4-lr2e-3] ") for line in log)
    assert load_motion_model(out / "b4-lr2e-3.safetensors").config["training"]["batch"] == 4


def test_sweep_refuses_before_any_work(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    r = _run("--device", "cpu", "--out", tmp_path / "full")
    assert r.returncode == 2 and "is not empty" in r.stderr
    r = _run("--device", "cpu", "--out", tmp_path / "new", "--variants", "b4-lr2e-3,b4-lr2e-3")
    assert r.returncode == 2 and "named once" in r.stderr
    seven = "b32-lr2e-3,b32-lr2e-3-uniform,b32-lr1e-3,b64-lr3e-3-high75,b32-lr2e-3-heads4,b4-lr2e-3,b4-lr2e-3-uniform"
    r = _run("--device", "cpu", "--out", tmp_path / "new", "--variants", seven)  # 7 + 2 files > 8
    assert r.returncode == 2 and "at most 6 variants" in r.stderr
    r = _run("--device", "cpu", "--out", tmp_path / "new", "--variants", "nope")
    assert r.returncode == 2 and "unknown variant" in r.stderr
    assert not (tmp_path / "new").exists()
