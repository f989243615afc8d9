"""`scv` end to end on the tiny offline pipelines: outputs, sidecars, no-overwrite, every user error."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scalecrafter_video.engine.patch import remove_scalecrafter
from scalecrafter_video.outputs import files as outputs

GEN = ("generate", "--steps", "4", "--no-progress")


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


def assert_one_line_error(code, err, *, contains=()):
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("scv: error: "), lines
    assert "Traceback" not in err
    for text in contains:
        assert text in lines[0], (text, lines[0])


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def named(path: Path | str, stem: str, suffix: str = ".png") -> Path:
    """`path`, checked to be `<stem>-<8 hex digits of the settings>` + suffix."""
    path = Path(path)
    assert re.fullmatch(re.escape(stem) + r"-[0-9a-f]{8}" + re.escape(suffix), path.name), path.name
    return path


# ---- generate: outputs and sidecars ---------------------------------------------------------
@pytest.mark.parametrize("model, family, guidance", [("tiny-sd", "sd15", 7.5), ("tiny-sdxl", "sdxl", 5.0)])
def test_generate_writes_png_and_sidecar(scv, tmp_path, model, family, guidance):
    code, out, err = scv(*GEN, "--model", model, "--prompt", "a red fox", "--res", "128x128", "--out", tmp_path)
    assert code == 0, err
    (line,) = out.strip().splitlines()
    png = named(line, "a-red-fox-128x128-scalecrafter-seed0")
    assert png.parent == tmp_path
    assert files_in(tmp_path) == [png.with_suffix(".json").name, png.name]
    assert Image.open(png).size == (128, 128)
    meta = json.loads(png.with_suffix(".json").read_text())
    assert meta["prompt"] == "a red fox" and meta["seed"] == 0 and meta["negative_prompt"] is None
    assert (meta["width"], meta["height"]) == (128, 128)
    assert meta["model"] == model and meta["model_id"] == model and meta["family"] == family
    assert meta["method"] == "scalecrafter" and meta["preset"] == "auto" and meta["ndcfg"] is True
    assert meta["steps"] == 4 and meta["guidance"] == guidance and meta["eta"] == 1.0
    assert meta["scheduler"] == "ddim" and meta["scheduler_class"] == "DDIMScheduler"
    assert meta["dtype"] == "float32" and meta["device"] == "cpu"
    assert "noise" in meta["note"]
    assert png.stem.endswith("-" + outputs.settings_id({"prompt": meta["prompt"], **meta["output_settings"]}))
    assert meta["plan"]["target"] == [128, 128] and meta["plan"]["base"] == [64, 64] and meta["plan"]["main"]
    assert set(meta["versions"]) >= {"scalecrafter_video", "torch", "diffusers", "transformers"}
    assert meta["command"][:2] == ["scv", "generate"] and "128x128" in meta["command"]
    assert "noise" in err  # the tiny pipelines say what they are


def test_tiny_model_needs_no_prompt(scv, tmp_path, monkeypatch):
    """`scv generate --model tiny-sd --res 128x128 --steps 4` (the README's smoke test) writes PNG + sidecar."""
    monkeypatch.chdir(tmp_path)
    code, out, err = scv("generate", "--model", "tiny-sd", "--res", "128x128", "--steps", "4", "--no-progress")
    assert code == 0, err
    png = Path(out.strip())
    assert png.parent == Path("outputs") and Image.open(png).size == (128, 128)
    assert json.loads(png.with_suffix(".json").read_text())["prompt"] == "smoke test"


@pytest.mark.parametrize("model", ["tiny-video", "tiny-video3d"])
def test_tiny_video_command_writes_an_mp4(scv, tmp_path, model):
    """`scv generate --video --model M --res 128x128 --frames 8 --steps 3 --out DIR`: an 8-frame 128x128 MP4."""
    from scalecrafter_video.outputs.media import read_video

    code, out, err = scv(
        "generate",
        "--video",
        "--model",
        model,
        "--res",
        "128x128",
        "--frames",
        "8",
        "--steps",
        "3",
        "--out",
        tmp_path,
        "--no-progress",
    )
    assert code == 0, err
    mp4 = Path(out.strip().splitlines()[0])
    assert mp4.suffix == ".mp4" and mp4.with_suffix(".json").exists()
    assert read_video(mp4).shape[:3] == (8, 128, 128)


def test_real_models_need_a_prompt(scv, tmp_path):
    code, out, err = scv("generate", "--model", "sd15", "--res", "1024x1024", "--out", tmp_path)
    assert_one_line_error(code, err, contains=("no prompt", "--prompt TEXT"))
    assert files_in(tmp_path) == []


def test_res_is_width_by_height(scv, tmp_path):
    code, out, err = scv(
        *GEN, "--model", "tiny-sdxl", "--prompt", "wide", "--res", "128x64", "--out", tmp_path, "--method", "direct"
    )
    assert code == 0, err
    png = Path(out.strip())
    assert Image.open(png).size == (128, 64)  # PIL size is (width, height)
    meta = json.loads(png.with_suffix(".json").read_text())
    assert (meta["width"], meta["height"]) == (128, 64) and meta["plan"] is None


def test_direct_and_scalecrafter_differ_and_are_reproducible(scv, tmp_path):
    args = (*GEN, "--model", "tiny-sd", "--prompt", "same seed", "--res", "128x128", "--out", tmp_path)
    code, direct_path, err = scv(*args, "--method", "direct")
    assert code == 0, err
    code, crafted_path, err = scv(*args, "--method", "scalecrafter")
    assert code == 0, err
    direct = pixels(named(direct_path.strip(), "same-seed-128x128-direct-seed0"))
    crafted = pixels(named(crafted_path.strip(), "same-seed-128x128-scalecrafter-seed0"))
    assert np.abs(direct - crafted).mean() > 1.0
    code, again_path, err = scv(*args, "--method", "direct", "--out", tmp_path / "again")
    assert Path(again_path.strip()).name == Path(direct_path.strip()).name  # same settings, same name
    assert np.array_equal(direct, pixels(Path(again_path.strip())))


def test_attn_sf_runs_and_comes_off(scv, tmp_path):
    code, out, err = scv(
        *GEN, "--model", "tiny-sd", "--prompt", "x", "--res", "128x128", "--out", tmp_path, "--method", "attn-sf"
    )
    assert code == 0, err
    meta = json.loads(Path(out.strip()).with_suffix(".json").read_text())
    assert meta["method"] == "attn-sf" and meta["attn_sf_layers"] > 0 and meta["plan"] is None


def test_prompts_file_seeds_and_negative_prompt(scv, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# a comment\na cat\n\na dog\n")
    out_dir = tmp_path / "out"
    code, out, err = scv(
        *GEN,
        "--model",
        "tiny-sd",
        "--prompts",
        prompts,
        "--res",
        "64x64",
        "--out",
        out_dir,
        "--num-per-prompt",
        "2",
        "--seed",
        "10",
        "--negative-prompt",
        "blurry",
        "--method",
        "direct",
    )
    assert code == 0, err
    names = [Path(p).name for p in out.split()]
    for name, stem in zip(
        names,
        [
            "a-cat-64x64-direct-seed10",
            "a-cat-64x64-direct-seed11",
            "a-dog-64x64-direct-seed12",
            "a-dog-64x64-direct-seed13",
        ],
        strict=True,
    ):
        named(name, stem)
    metas = [json.loads((out_dir / n).with_suffix(".json").read_text()) for n in names]
    assert [(m["prompt"], m["seed"], m["index"]) for m in metas] == [
        ("a cat", 10, 0),
        ("a cat", 11, 1),
        ("a dog", 12, 0),
        ("a dog", 13, 1),
    ]
    assert all(m["negative_prompt"] == "blurry" for m in metas)


def test_ndcfg_switch_changes_the_output(scv, tmp_path):
    # 256 px on the 64 px tiny model is 4x per side: the derived plan has an NDCFG window.
    args = (*GEN, "--model", "tiny-sd", "--prompt", "nd", "--res", "256x256", "--steps", "2")
    code, on, err = scv(*args, "--out", tmp_path)
    assert code == 0, err
    code, off, err = scv(*args, "--out", tmp_path, "--no-ndcfg")  # another setting, another name
    assert code == 0, err
    on, off = Path(on.strip()), Path(off.strip())
    assert on != off and on.exists() and named(off, "nd-256x256-scalecrafter-seed0")
    assert json.loads(on.with_suffix(".json").read_text())["plan"]["ndcfg_stop"] > 0
    assert json.loads(off.with_suffix(".json").read_text())["ndcfg"] is False
    assert not np.array_equal(pixels(on), pixels(off))


def test_freeu_and_scheduler_recorded(scv, tmp_path):
    code, out, err = scv(
        *GEN,
        "--model",
        "tiny-sd",
        "--prompt",
        "f",
        "--res",
        "64x64",
        "--out",
        tmp_path,
        "--method",
        "direct",
        "--freeu",
        "--scheduler",
        "dpm++",
        "--guidance",
        "3",
    )
    assert code == 0, err
    meta = json.loads(Path(out.strip()).with_suffix(".json").read_text())
    assert meta["freeu"] == {"b1": 1.2, "b2": 1.4, "s1": 0.9, "s2": 0.2}
    assert meta["scheduler_class"] == "DPMSolverMultistepScheduler" and meta["guidance"] == 3.0


# ---- no overwrite ---------------------------------------------------------------------------
def test_no_overwrite_then_overwrite(scv, tmp_path):
    args = (
        *GEN,
        "--model",
        "tiny-sd",
        "--prompt",
        "keep me",
        "--res",
        "64x64",
        "--out",
        tmp_path,
        "--method",
        "direct",
    )
    code, out, err = scv(*args)
    assert code == 0, err
    png = Path(out.strip())
    before = (png.read_bytes(), png.stat().st_mtime_ns, png.with_suffix(".json").read_bytes())
    code, out, err = scv(*args)
    assert_one_line_error(code, err, contains=("already exists", "--overwrite"))
    assert (png.read_bytes(), png.stat().st_mtime_ns, png.with_suffix(".json").read_bytes()) == before
    assert files_in(tmp_path) == [png.with_suffix(".json").name, png.name]
    code, out, err = scv(*args, "--overwrite")
    assert code == 0, err
    assert png.stat().st_mtime_ns != before[1]
    assert files_in(tmp_path) == [png.with_suffix(".json").name, png.name]


def test_all_targets_checked_before_generating(scv, tmp_path):
    from scalecrafter_video.jobs.generate import targets
    from scalecrafter_video.jobs.options import GenerateOptions

    opts = GenerateOptions(
        prompts=["p"],
        height=64,
        width=64,
        model="tiny-sd",
        method="direct",
        steps=4,
        num_per_prompt=2,
        out_dir=tmp_path,
    )
    second = targets(opts)[1].path.with_suffix(".json")
    second.write_text("{}")  # the second image's sidecar exists
    code, out, err = scv(
        *GEN,
        "--model",
        "tiny-sd",
        "--prompt",
        "p",
        "--res",
        "64x64",
        "--out",
        tmp_path,
        "--num-per-prompt",
        "2",
        "--method",
        "direct",
    )
    assert_one_line_error(code, err, contains=(second.name,))
    assert files_in(tmp_path) == [second.name]


def test_similar_prompts_get_distinct_names(scv, tmp_path):
    prompts = tmp_path / "dup.txt"
    prompts.write_text("Same!\nsame\n")
    out_dir = tmp_path / "out"
    code, out, err = scv(
        *GEN, "--model", "tiny-sd", "--prompts", prompts, "--res", "64x64", "--out", out_dir, "--seed", "3"
    )
    assert code == 0, err  # different seeds (3, 4): different names
    assert len(out.split()) == 2


# ---- errors: one line, exit 2, nothing written ----------------------------------------------
@pytest.mark.parametrize(
    "res, message",
    [
        ("abc", "WIDTHxHEIGHT"),
        ("128", "WIDTHxHEIGHT"),
        ("0x128", "positive"),
        ("128x-64", "positive"),
        ("20000x128", "maximum"),
        ("128x100", "use 64 or 128"),  # suggestions the model accepts, not 96 or 104
        ("136x128", "divisible by 64"),  # a multiple of 8, but tiny-sd has 3 downsamplers
        ("1.5x128", "WIDTHxHEIGHT"),
    ],
)
def test_bad_sizes(scv, tmp_path, res, message):
    out_dir = tmp_path / "out"
    code, out, err = scv(*GEN, "--model", "tiny-sd", "--prompt", "x", "--res", res, "--out", out_dir)
    assert_one_line_error(code, err, contains=(message,))
    assert not out_dir.exists() and out == ""


def test_sdxl_layout_needs_multiples_of_32(scv, tmp_path):
    ok = scv(*GEN, "--model", "tiny-sdxl", "--prompt", "x", "--res", "96x64", "--out", tmp_path, "--method", "direct")
    assert ok[0] == 0, ok[2]
    code, out, err = scv(*GEN, "--model", "tiny-sdxl", "--prompt", "x", "--res", "104x64", "--out", tmp_path / "b")
    assert_one_line_error(code, err, contains=("divisible by 32", "96 or 128"))


def write_preset(path: Path, layer: str = "down_blocks.1", **extra) -> Path:
    lines = [
        'name = "custom"',
        'family = "sd15"',
        "height = 128",
        "width = 128",
        "",
        "[main]",
        "stop = 30",
        f'factors = {{ "{layer}" = 2 }}',
    ]
    lines += [f"{k} = {v}" for k, v in extra.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    "make_args, message",
    [
        (lambda d: ["--preset", "sd15-2048x2049"], "unknown preset"),
        (lambda d: ["--preset", str(write_preset(d / "bad.toml", colour='"red"'))], "unknown key"),
        (lambda d: ["--preset", str(d / "missing.toml")], "does not exist"),
        (
            lambda d: ["--preset", str(write_preset(d / "layer.toml", layer="down_blocks.7")), "--force-preset"],
            "down_blocks.7",
        ),
        (lambda d: ["--prompts", str(d / "nope.txt")], "does not exist"),
        (lambda d: ["--prompts", str(_write(d / "empty.txt", "# only a comment\n\n"))], "has no prompts"),
        (lambda d: ["--prompts", str(_write(d / "bin.txt", b"\xff\xfe\x00\x01"))], "not UTF-8"),
        (lambda d: ["--prompts", str(d)], "not a file"),
        (lambda d: ["--prompt", "  "], "empty"),
        (lambda d: ["--model", str(d / "no-such-folder")], "does not exist"),
        (lambda d: ["--model", "not a/valid/id at all"], "does not exist"),
        (lambda d: ["--model", "bad id!"], "valid hub id"),
        (lambda d: ["--model", "zeroscope"], "pass --video"),
        (lambda d: ["--model", str(_pipeline_folder(d, "UNetMotionModel"))], "--video"),
        (lambda d: ["--model", str(_pipeline_folder(d, "UNet2DModel"))], "unsupported UNet class UNet2DModel"),
        (lambda d: ["--model", str(_pipeline_folder(d, None))], "no model_index.json"),
        (lambda d: ["--device", "cuda:7"] if not _has_cuda() else ["--device", "tpu"], "device"),
        (lambda d: ["--eta", "2"], "eta"),
        (lambda d: ["--method", "magic"], "invalid choice"),
        (lambda d: ["--steps", "0"], "at least 1"),
        (lambda d: ["--seed", "-1"], "seed"),
        (lambda d: ["--frames"], "expected one argument"),
    ],
)
def test_user_errors_are_one_line_exit_2(scv, tmp_path, make_args, message):
    extra = make_args(tmp_path)
    out_dir = tmp_path / "out"
    base = [
        "generate",
        "--no-progress",
        "--steps",
        "4",
        "--model",
        "tiny-sd",
        "--res",
        "128x128",
        "--out",
        str(out_dir),
    ]
    if not any(a in extra for a in ("--prompt", "--prompts")):
        base += ["--prompt", "x"]
    code, out, err = scv(*base, *extra)
    assert_one_line_error(code, err, contains=(message,))
    assert not out_dir.exists()


def _write(path: Path, data) -> Path:
    path.write_bytes(data) if isinstance(data, bytes) else path.write_text(data)
    return path


def _pipeline_folder(root: Path, unet_class) -> Path:
    folder = root / f"pipe-{unet_class}"
    folder.mkdir()
    if unet_class is not None:
        index = {
            "_class_name": "StableDiffusionPipeline",
            "unet": ["diffusers", unet_class],
            "vae": ["diffusers", "AutoencoderKL"],
        }
        (folder / "model_index.json").write_text(json.dumps(index))
    return folder


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def test_missing_model_offline_fails_fast(scv, tmp_path, empty_hf_cache, no_weights_or_network):
    code, out, err = scv(*GEN, "--model", "sd15", "--prompt", "x", "--res", "1024x1024", "--out", tmp_path / "o")
    assert_one_line_error(
        code,
        err,
        contains=(
            "'sd15'",
            "stable-diffusion-v1-5/stable-diffusion-v1-5",
            "not in the local Hugging Face cache",
            "hf download stable-diffusion-v1-5/stable-diffusion-v1-5",
            "--model /path",
        ),
    )
    assert not (tmp_path / "o").exists()


def test_hub_id_missing_offline(scv, tmp_path, empty_hf_cache):
    code, out, err = scv(
        *GEN, "--model", "someone/some-model", "--prompt", "x", "--res", "1024x1024", "--out", tmp_path
    )
    assert_one_line_error(code, err, contains=("someone/some-model", "HF_HUB_OFFLINE"))


def test_argparse_errors_are_one_line(scv):
    code, out, err = scv("generate", "--prompt", "x")
    assert_one_line_error(code, err, contains=("--res", "scv generate --help"))
    code, out, err = scv("frobnicate")
    assert_one_line_error(code, err, contains=("invalid choice",))
    code, out, err = scv()
    assert_one_line_error(code, err, contains=("choose a command",))


def test_keyboard_interrupt_exits_130_and_leaves_the_model_intact(scv, tmp_path, monkeypatch, tiny_sd):
    import torch

    from scalecrafter_video.models import tiny

    monkeypatch.setattr(tiny, "tiny_pipeline", lambda name: tiny_sd)
    unet = tiny_sd.unet
    state = {k: v.clone() for k, v in unet.state_dict().items()}
    hooks_before = (len(unet._forward_pre_hooks), len(unet._forward_hooks))
    calls = {"n": 0}

    def interrupt(module, args):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt

    handle = unet.register_forward_pre_hook(interrupt)
    try:
        code, out, err = scv(*GEN, "--model", "tiny-sd", "--prompt", "stop", "--res", "256x256", "--out", tmp_path)
    finally:
        handle.remove()
    assert code == 130 and "interrupted" in err and "Traceback" not in err
    assert files_in(tmp_path) == []  # no image, no sidecar, no temp file
    assert remove_scalecrafter(tiny_sd) is False  # the context manager already took the patch off
    assert (len(unet._forward_pre_hooks), len(unet._forward_hooks)) == hooks_before
    assert not any("_conv_forward" in m.__dict__ for m in unet.modules())
    assert all(torch.equal(state[k], v) for k, v in unet.state_dict().items())


def test_debug_shows_traceback(scv, tmp_path):
    code, out, err = scv(*GEN, "--model", "tiny-sd", "--prompt", "x", "--res", "130x128", "--out", tmp_path, "--debug")
    assert code == 2 and "Traceback" in err and err.strip().splitlines()[-1].startswith("scv: error: ")


def test_module_entry_point_subprocess(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "scalecrafter_video",
            "generate",
            "--prompt",
            "x",
            "--res",
            "0x64",
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["scv: error: --res 0x64: width must be positive, got 0"]
    assert not (tmp_path / "o").exists()


# ---- video dispatch -------------------------------------------------------------------------
def test_video_flag_dispatches_with_video_defaults(scv, tmp_path, monkeypatch):
    generate = pytest.importorskip("scalecrafter_video.jobs.generate")
    seen = {}

    def fake(opts):
        seen["opts"] = opts
        return [tmp_path / "v.mp4"]

    monkeypatch.setattr(generate, "run_job", fake)
    code, out, err = scv("generate", "--video", "--prompt", "waves", "--res", "768x512", "--out", tmp_path)
    assert code == 0, err
    opts = seen["opts"]
    assert opts.video and opts.model == "animatediff" and opts.frames == 16 and opts.fps == 8
    assert (opts.width, opts.height) == (768, 512) and out.strip() == str(tmp_path / "v.mp4")


# ---- plan and presets -----------------------------------------------------------------------
def test_plan_json_structure(scv):
    code, out, err = scv("plan", "--family", "sd15", "--res", "2048x2048", "--steps", "50", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert list(data) == ["steps"]
    rows = data["steps"]
    assert len(rows) == 50
    assert [r["index"] for r in rows] == list(range(50))
    assert [r["timestep"] for r in rows] == list(range(981, 0, -20))
    for row in rows:
        assert list(row) == ["index", "timestep", "main", "damped"]
        for variant in ("main", "damped"):
            for layer, factor in row[variant].items():
                assert layer.split(".")[0] in {"down_blocks", "mid_block", "up_blocks"}
                assert factor != 1 and (isinstance(factor, (int, float)) or len(factor) == 2)
        assert not set(row["damped"]) - set(row["main"])
    assert rows[0]["main"] and rows[0]["damped"]
    assert rows[49]["main"] == {} and rows[49]["damped"] == {}
    assert not any(k.startswith("down_blocks.0") for r in rows for k in r["main"])


def test_plan_json_without_ndcfg_has_no_damped(scv):
    code, out, err = scv("plan", "--family", "sdxl", "--res", "4096x4096", "--steps", "30", "--json", "--no-ndcfg")
    assert code == 0, err
    rows = json.loads(out)["steps"]
    assert len(rows) == 30 and all(r["damped"] == {} for r in rows) and rows[0]["main"]


def test_plan_text_table(scv):
    code, out, err = scv("plan", "--family", "sd15", "--res", "2048x2048", "--steps", "50")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert "sd15-2048x2048" in lines[0] and "NDCFG" in lines[0]
    assert lines[1].startswith("steps 0-") and "main:" in lines[1] and "damped:" in lines[1]
    assert lines[-1].endswith("none (plain convs)") and "49" in lines[-1]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--family", "sd15", "--res", "2048x2048", "--steps", "50", "--preset", "sdxl-4096x4096"], "family"),
        (["--family", "sd15", "--res", "2048x2048", "--steps", "50", "--preset", "nope"], "unknown preset"),
        (["--family", "sd99", "--res", "2048x2048", "--steps", "50"], "invalid choice"),
        (["--family", "sd15", "--res", "big", "--steps", "50"], "WIDTHxHEIGHT"),
        (["--family", "sd15", "--res", "2048x2048", "--steps", "0"], "at least 1"),
        (["--family", "sd15", "--res", "1000x1000", "--steps", "50"], "divisible by 64"),
    ],
)
def test_plan_errors(scv, args, message):
    code, out, err = scv("plan", *args)
    assert_one_line_error(code, err, contains=(message,))


def test_presets_lists_reference_presets(scv):
    code, out, err = scv("presets")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[0].split()[:2] == ["name", "family"]
    names = {line.split()[0] for line in lines[1:]}
    assert {"sd15-2048x2048", "sd21-1024x1024", "sdxl-4096x4096"} <= names
    code, out, err = scv("presets", "--family", "sdxl", "--json")
    data = json.loads(out)
    assert set(data) == {"sdxl-2048x2048", "sdxl-2560x2560", "sdxl-4096x2048", "sdxl-4096x4096"}
    assert data["sdxl-4096x4096"]["ndcfg_stop"] == 35


def test_demo_is_registered(scv):
    pytest.importorskip("scalecrafter_video.commands.demo.cli")
    code, out, err = scv("demo", "--help")
    assert code == 0 and "usage: scv demo" in out
    code, out, err = scv("demo", "--samples", "many")
    assert_one_line_error(code, err, contains=("--samples", "scv demo --help"))


def test_help_has_groups_and_examples(scv):
    code, out, err = scv("generate", "--help")
    assert code == 0
    for title in ("loading:", "method:", "sampling:", "output:", "video:", "examples:"):
        assert title in out
    code, out, err = scv("--help")
    assert code == 0 and "generate" in out and "plan" in out and "examples:" in out
