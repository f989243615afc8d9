"""`scv sweep`: the grid and its seeds, the manifest, resuming, and sharding (in-process, no launcher)."""

import json
import os

import pytest

from scalecrafter_video.commands.sweep.grid import build_grid, item_seed
from scalecrafter_video.commands.sweep.manifest import (
    ManifestWriter,
    check_settings,
    read_manifest,
)
from scalecrafter_video.engine.errors import ScaleCrafterError


def test_grid_covers_every_item_once_with_stable_seeds():
    items = build_grid(
        ["a", "b", "c"],
        2,
        ["direct", "scalecrafter"],
        [(128, 128), (64, 64), (128, 64)],
        base=(64, 64),
        include_base=True,
    )
    keys = [i.key for i in items]
    assert len(keys) == len(set(keys)) == 3 * 2 * (1 + 2 + 2)
    at_base = [i for i in items if (i.width, i.height) == (64, 64)]
    assert all(i.base and i.method == "direct" for i in at_base) and len(at_base) == 6
    # one seed per (prompt, seed number): the same for every method and size, different across pairs
    seeds = {}
    for i in items:
        seeds.setdefault((i.prompt_index, i.seed_index), set()).add(i.seed)
    assert all(len(s) == 1 for s in seeds.values())
    assert len({next(iter(s)) for s in seeds.values()}) == 6
    assert item_seed(0, 0) == item_seed(0, 0) and 0 <= item_seed(5, 7) < 2**63
    # more prompts or seeds later leave every earlier item's seed and name as it was
    bigger = build_grid(
        ["a", "b", "c", "d"],
        3,
        ["direct", "scalecrafter"],
        [(128, 128), (64, 64), (128, 64)],
        base=(64, 64),
        include_base=True,
    )
    old = {i.key: (i.seed, i.relpath(".png")) for i in items}
    assert all(old[i.key] == (i.seed, i.relpath(".png")) for i in bigger if i.key in old)


def test_shares_are_disjoint_and_cover_the_pending_items():
    items = build_grid([f"p{i}" for i in range(5)], 3, ["direct", "attn-sf"], [(128, 128)], (64, 64), True)
    for world in (1, 2, 3, 7):
        shares = [items[r::world] for r in range(world)]
        flat = [i.key for s in shares for i in s]
        assert sorted(flat) == sorted(i.key for i in items) and len(flat) == len(set(flat))


def test_manifest_merges_processes_and_survives_a_torn_line(tmp_path):
    with ManifestWriter(tmp_path, 0) as w0, ManifestWriter(tmp_path, 1) as w1:
        w0.record({"key": "a", "path": "x/a.png"})
        w1.record({"key": "b", "path": "x/b.png"})
        w1.record({"key": "a", "path": "x/a-again.png"})
    path = tmp_path / "manifest" / "rank001.jsonl"
    with open(path, "ab") as f:
        f.write(b'{"key": "c", "pa')  # a crash in the middle of a write
    assert set(read_manifest(tmp_path)) == {"a", "b"}
    with ManifestWriter(tmp_path, 1) as w1:  # the next run starts on a fresh line
        w1.record({"key": "d", "path": "x/d.png"})
    done = read_manifest(tmp_path)
    assert set(done) == {"a", "b", "d"} and done["a"]["path"] == "x/a.png"


def test_settings_must_match_to_resume(tmp_path):
    settings = {"model": "tiny-sd", "steps": 2, "prompts": ["a", "b"]}
    check_settings(tmp_path, settings, write=True)
    check_settings(tmp_path, dict(settings, prompts=["a", "b", "c"]), write=True)  # prompts added at the end
    assert json.loads((tmp_path / "sweep.json").read_text())["prompts"] == ["a", "b", "c"]
    with pytest.raises(ScaleCrafterError, match="steps 2, not 3"):
        check_settings(tmp_path, dict(settings, steps=3), write=False)
    with pytest.raises(ScaleCrafterError, match="prompt 2"):
        check_settings(tmp_path, dict(settings, prompts=["a", "z"]), write=False)


@pytest.fixture
def prompts(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("a red fox\n# a comment\na blue car\n")
    return path


def _sweep_args(prompts, out, *extra):
    return [
        "sweep",
        "--model",
        "tiny-sd",
        "--prompts",
        prompts,
        "--res",
        "128x128",
        "--base",
        "--seeds",
        1,
        "--steps",
        2,
        "--methods",
        "direct,scalecrafter",
        "--out",
        out,
        "--device",
        "cpu",
        "--no-progress",
        *extra,
    ]


def test_sweep_runs_resumes_and_a_second_run_generates_nothing(scv, prompts, tmp_path):
    out = tmp_path / "sweep"
    code, stdout, err = scv(*_sweep_args(prompts, out))
    assert code == 0, err
    assert "6 items; 0 finished before this run, 6 generated" in stdout
    done = read_manifest(out)
    assert len(done) == 6 and {e["method"] for e in done.values()} == {"direct", "scalecrafter"}
    for entry in done.values():
        side = json.loads((out / entry["sidecar"]).read_text())
        assert (side["seed"], side["method"], side["width"]) == (entry["seed"], entry["method"], entry["width"])
        assert side["base"] == (entry["width"] == 64) and side["base_size"] == [64, 64]
        assert (out / entry["path"]).is_file()
    assert json.loads((out / done["p0-s0-scalecrafter-128x128"]["sidecar"]).read_text())["plan"] is not None
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    assert "sweep process 0 of 1" in (out / "logs" / "rank000.log").read_text()

    code, stdout, err = scv(*_sweep_args(prompts, out))
    assert code == 0 and "6 finished before this run, 0 generated and 0 recorded" in stdout
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.png")} == stamps
    assert sum(1 for _ in (out / "manifest" / "rank000.jsonl").open()) == 6

    # a crash between writing an item and recording it: the rerun records the files, generates nothing
    manifest = out / "manifest" / "rank000.jsonl"
    lines = manifest.read_text().splitlines(keepends=True)
    manifest.write_text("".join(lines[:-1]))
    (out / "direct" / "128x128" / ".p00000-s000-a-red-fox.1234abcd.tmp.png").write_bytes(b"half")
    code, stdout, err = scv(*_sweep_args(prompts, out))
    assert code == 0 and "0 generated and 1 recorded" in stdout
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.png")} == stamps  # also: the stale temp file is gone
    assert len(read_manifest(out)) == 6


def test_sweep_grows_and_refuses_other_settings_or_foreign_files(scv, prompts, tmp_path):
    out = tmp_path / "sweep"
    code, _, err = scv(*_sweep_args(prompts, out, "--methods", "direct"))
    assert code == 0, err
    code, stdout, err = scv(*_sweep_args(prompts, out, "--methods", "direct,attn-sf"))
    assert code == 0 and "4 finished before this run, 2 generated" in stdout, err
    code, _, err = scv(*_sweep_args(prompts, out, "--steps", 3))
    assert code == 2 and "steps 2, not 3" in err and err.count("\n") <= 2
    foreign = out / "scalecrafter" / "128x128" / "p00000-s000-a-red-fox.png"
    foreign.parent.mkdir(parents=True)
    foreign.write_bytes(b"not ours")
    code, _, err = scv(*_sweep_args(prompts, out, "--methods", "direct,attn-sf,scalecrafter"))
    assert code == 2 and "is not this sweep's item" in err
    assert foreign.read_bytes() == b"not ours"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--methods", "direct,bogus"], "unknown method 'bogus'"),
        (["--seeds", 0], "--seeds must be at least 1"),
        (["--res", "100x100"], "not divisible"),
        (["--num-processes", 0], "--num-processes"),
        (["--eta", 2], "eta must be between 0 and 1"),
    ],
)
def test_sweep_bad_input_is_one_line_and_writes_nothing(scv, prompts, tmp_path, args, message):
    out = tmp_path / "sweep"
    code, _, err = scv(*_sweep_args(prompts, out, *args))
    assert code == 2 and message in err, err
    assert not (out / "manifest").exists() or not any((out / "manifest").iterdir())
    assert not list(out.rglob("*.png")) if out.exists() else True


def test_the_launcher_reruns_the_same_command_without_num_processes():
    from scalecrafter_video.commands.sweep.launch import launch_command

    cmd = launch_command(["sweep", "--model", "m", "--num-processes", "3", "--out", "o"], 3)
    i = cmd.index("-m", cmd.index("accelerate.commands.launch") + 1)
    assert cmd[i:] == ["-m", "scalecrafter_video", "sweep", "--model", "m", "--out", "o"]
    assert cmd[cmd.index("--num_processes") + 1] == "3" and "--multi_gpu" in cmd
    assert os.environ.get("WORLD_SIZE") is None


def test_video_sweep_writes_mp4s_with_sidecars_and_eval_scores_every_frame(scv, tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("waves\n")
    out = tmp_path / "video"
    code, stdout, err = scv(
        "sweep",
        "--video",
        "--model",
        "tiny-video",
        "--prompts",
        prompts,
        "--res",
        "128x128",
        "--base",
        "--frames",
        2,
        "--steps",
        2,
        "--methods",
        "scalecrafter",
        "--out",
        out,
        "--device",
        "cpu",
        "--no-progress",
    )
    assert code == 0 and "2 items; 0 finished before this run, 2 generated" in stdout, err
    done = read_manifest(out)
    side = json.loads((out / done["p0-s0-scalecrafter-128x128"]["sidecar"]).read_text())
    assert side["kind"] == "video" and side["plan"] is not None and side["motion"]["frames"] == 2
    assert (out / done["p0-s0-direct-64x64"]["path"]).stat().st_size > 0
    report = tmp_path / "eval.json"
    code, stdout, err = scv("eval", "--generated", out, "--features", "random", "--json", report, "--no-progress")
    assert code == 0, err
    rows = {(r["method"], r["res"]): r for r in json.loads(report.read_text())["rows"]}
    assert set(rows) == {("direct", "64x64"), ("scalecrafter", "128x128")}
    assert all(r["video"] and r["n"] == 1 and r["frames"] == 2 for r in rows.values())  # FID over frames
    assert rows["direct", "64x64"]["base"] and rows["direct", "64x64"]["fid_b"] is None
    assert rows["scalecrafter", "128x128"]["fid_b"] is not None
    assert "| frames |" in stdout and "n = clips" in stdout


def test_cpu_launch_processes_reads_the_launchers_process_count():
    from scalecrafter_video.commands.sweep.launch import cpu_launch_processes

    env = {"ACCELERATE_USE_CPU": "True", "MASTER_ADDR": "127.0.0.1"}
    parent = ["/usr/bin/python", "-m", "accelerate.commands.launch", "--num_processes", "3", "--cpu", "-m", "x"]
    assert cpu_launch_processes(env, parent) == 3
    assert cpu_launch_processes(env, [*parent[:3], "--num_processes=2", "--cpu"]) == 2
    assert cpu_launch_processes(env, ["/usr/bin/accelerate", "launch", "--cpu", "--num_processes", "1"]) is None
    assert cpu_launch_processes({**env, "WORLD_SIZE": "2"}, parent) is None  # already one of several processes
    assert cpu_launch_processes({"MASTER_ADDR": "127.0.0.1"}, parent) is None  # not a CPU launch
    assert cpu_launch_processes(env, ["/bin/bash", "run.sh", "--num_processes", "4"]) is None  # not accelerate
    assert cpu_launch_processes(env, [*parent, "--mpirun_hostfile", "hosts"]) is None  # MPI forks by itself


@pytest.mark.parametrize("recorded", [False, True])
def test_a_failed_launch_takes_back_only_settings_nothing_was_recorded_with(
    scv, prompts, tmp_path, monkeypatch, recorded
):
    """--num-processes N: when the processes fail, the launcher removes the settings file the main
    process wrote if no item was recorded (the folder takes other settings again), and keeps a sweep
    that recorded something (it resumes)."""
    from scalecrafter_video.commands.sweep import launch as launch_module
    from scalecrafter_video.commands.sweep.manifest import MANIFEST_DIR, SETTINGS_FILE

    out = tmp_path / "sweep"

    def failing_processes(argv, processes):
        assert processes == 2 and argv[0] == "sweep"
        out.mkdir()
        (out / SETTINGS_FILE).write_text("{}\n")  # the main process's check_settings
        (out / MANIFEST_DIR).mkdir()
        line = json.dumps({"key": "x", "status": "ok"}) + "\n" if recorded else ""
        (out / MANIFEST_DIR / "rank0.jsonl").write_text(line)
        return 1

    monkeypatch.setattr(launch_module, "launch", failing_processes)
    code, _, err = scv(*_sweep_args(prompts, out), "--num-processes", 2)
    assert code == 1 and "a process failed (exit 1)" in err
    assert (out / SETTINGS_FILE).exists() == recorded
    assert (out / MANIFEST_DIR).exists() == recorded
