"""`scv sweep` as real processes: two CPU processes under accelerate's launcher, and killed processes.
Each test starts Python processes that import torch and diffusers (tens of seconds on a busy CPU)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from scalecrafter_video.commands.sweep.launch import free_port
from scalecrafter_video.commands.sweep.manifest import read_manifest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")


@pytest.fixture
def prompts(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("a red fox\na blue car\na green tree\n")
    return path


def _grid(prompts, out):
    return [
        "sweep",
        "--model",
        "tiny-sd",
        "--prompts",
        str(prompts),
        "--res",
        "128x128",
        "--base",
        "--seeds",
        "2",
        "--steps",
        "2",
        "--methods",
        "direct,scalecrafter",
        "--out",
        str(out),
        "--device",
        "cpu",
        "--no-progress",
    ]


TOTAL = 3 * 2 * 3  # prompts x seeds x (base + two methods at 128 px)


def _wait_for(predicate, proc, timeout=300.0):
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return True
        if proc.poll() is not None:
            return predicate()
        time.sleep(0.1)
    return False


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def _check_consistent(out: Path) -> dict:
    """Every recorded item is complete on disk; no result file lacks its sidecar; nothing half-written."""
    done = read_manifest(out)
    for entry in done.values():
        with Image.open(out / entry["path"]) as im:
            im.load()
        assert json.loads((out / entry["sidecar"]).read_text())["seed"] == entry["seed"]
    for png in out.rglob("*.png"):
        if not png.name.startswith("."):
            assert png.with_suffix(".json").is_file()
    return done


LAUNCHERS = {
    # torchrun path, as the README shows for CPUs
    "multi_gpu": [
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
    ],
    # accelerate's own CPU flag starts one process without MPI; the sweep relaunches itself as two
    "cpu": [
        "--num_processes",
        "2",
        "--cpu",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
    ],
}


@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_two_cpu_processes_share_the_grid(prompts, tmp_path, launcher):
    out = tmp_path / "sweep"
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        *LAUNCHERS[launcher],
        "--main_process_port",
        str(free_port()),
        "-m",
        "scalecrafter_video",
        *_grid(prompts, out),
    ]
    run = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    assert ("running the sweep as 2 CPU processes" in run.stderr) == (launcher == "cpu")
    per_rank = [
        [json.loads(line)["key"] for line in (out / "manifest" / f"rank{r:03d}.jsonl").read_text().splitlines()]
        for r in (0, 1)
    ]
    assert all(per_rank) and not set(per_rank[0]) & set(per_rank[1])
    assert len(per_rank[0]) + len(per_rank[1]) == TOTAL
    assert len(_check_consistent(out)) == TOTAL
    for r in (0, 1):
        assert f"sweep process {r} of 2" in (out / "logs" / f"rank{r:03d}.log").read_text()
    assert f"{TOTAL} items; 0 finished before this run" in run.stdout  # printed by process 0 only
    assert run.stdout.count("items;") == 1


def test_a_killed_process_loses_only_its_item_and_the_rerun_finishes(prompts, tmp_path, scv):
    out = tmp_path / "sweep"
    proc = subprocess.Popen(
        [sys.executable, "-m", "scalecrafter_video", *_grid(prompts, out)],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    manifest = out / "manifest" / "rank000.jsonl"
    try:
        assert _wait_for(lambda: _lines(manifest) >= 2, proc)
        assert proc.poll() is None, "the sweep finished before it could be killed"
        proc.kill()
    finally:
        proc.wait()
    finished = _check_consistent(out)
    assert 2 <= len(finished) < TOTAL
    code, stdout, err = scv(*_grid(prompts, out))
    assert code == 0, err
    assert f"{len(finished)} finished before this run" in stdout
    assert len(_check_consistent(out)) == TOTAL
    code, stdout, _ = scv(*_grid(prompts, out))
    assert f"{TOTAL} finished before this run, 0 generated and 0 recorded" in stdout


def test_killing_one_of_two_processes_keeps_the_finished_items(prompts, tmp_path, scv):
    out = tmp_path / "sweep"
    proc = subprocess.Popen(
        [sys.executable, "-m", "scalecrafter_video", *_grid(prompts, out), "--num-processes", "2"],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    log = out / "logs" / "rank001.log"
    try:
        assert _wait_for(lambda: _lines(out / "manifest" / "rank001.jsonl") >= 1, proc)
        assert proc.poll() is None, "the sweep finished before it could be killed"
        pid = int(log.read_text().split("pid ", 1)[1].split()[0])
        os.kill(pid, signal.SIGKILL)
        assert proc.wait(timeout=300) != 0  # the launcher reports the failure
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    finished = _check_consistent(out)
    assert 1 <= len(finished) < TOTAL
    code, stdout, err = scv(*_grid(prompts, out))
    assert code == 0 and f"{len(finished)} finished before this run" in stdout, err
    assert len(_check_consistent(out)) == TOTAL
