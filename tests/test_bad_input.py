"""Issue 9: bad input is refused before any model loads, outputs are never overwritten silently,
names are unique per settings, and a stopped batch resumes with --skip-existing."""

import io
import json
import sys
from pathlib import Path

import pytest

from helpers import one_line_error
from scalecrafter_video import (
    ScaleCrafterError,
    apply_scalecrafter,
    remove_scalecrafter,
)
from scalecrafter_video.jobs import frames, image, resources, video
from scalecrafter_video.jobs.generate import run_job, targets
from scalecrafter_video.models import tiny

GEN = ("generate", "--no-progress", "--steps", "2")
GIB = 1024**3


@pytest.fixture
def no_loading(monkeypatch):
    """Any model load fails the test: the checks under test must come first."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")

    for module, name in ((tiny, "tiny_pipeline"), (image, "load_pipeline"), (video, "load_video_pipeline")):
        monkeypatch.setattr(module, name, refuse)


@pytest.fixture
def shared_tiny_sd(monkeypatch, tiny_sd):
    monkeypatch.setattr(tiny, "tiny_pipeline", lambda name: tiny_sd)
    return tiny_sd


# ---- 1. scv demo never overwrites an earlier run silently -------------------------------------
def test_demo_refuses_to_overwrite_before_sampling(scv, tmp_path, monkeypatch):
    pytest.importorskip("scalecrafter_video.commands.demo.cli")
    from scalecrafter_video.models.shapes import model as demo_model

    args = (
        "demo",
        "--scales",
        "1",
        "--samples",
        "1",
        "--steps",
        "1",
        "--no-progress",
        "--out",
        tmp_path / "d",
        "--json",
        tmp_path / "j" / "demo.json",
    )
    code, out, err = scv(*args)
    assert code == 0, err
    written = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert sorted(p.name for p in written) == ["demo.json", "grid.png", "results.json", "table.md"]

    def refuse():
        raise AssertionError("the demo model was loaded")

    monkeypatch.setattr(demo_model, "load_demo_model", refuse)
    code, out, err = scv(*args)
    one_line_error(code, err, "already exists", "--overwrite")
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == written
    code, out, err = scv(*args[:-2])  # only the --json file is new: the folder's files still block
    one_line_error(code, err, "grid.png", "already exists")
    monkeypatch.undo()
    code, out, err = scv(*args, "--overwrite")
    assert code == 0, err


@pytest.mark.parametrize("flag", ["--out", "--json"])
def test_demo_output_targets_checked_first(scv, tmp_path, flag, monkeypatch):
    pytest.importorskip("scalecrafter_video.commands.demo.cli")
    from scalecrafter_video.models.shapes import model as demo_model

    monkeypatch.setattr(demo_model, "load_demo_model", lambda: pytest.fail("the demo model was loaded"))
    code, out, err = scv("demo", flag, "")
    one_line_error(code, err, f"{flag} is empty")
    (tmp_path / "somefile").write_text("")
    target = tmp_path / "somefile" / ("sub" if flag == "--out" else "sub/demo.json")
    code, out, err = scv("demo", flag, target, *(("--out", tmp_path / "o") if flag == "--json" else ()))
    one_line_error(code, err, "is a file, not a folder", flag)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["somefile"]


# ---- 2. output folders are probed before any model loads ----------------------------------------
@pytest.mark.parametrize("video_run", [False, True])
def test_unwritable_out_is_refused_before_loading(scv, tmp_path, no_loading, video_run):
    (tmp_path / "somefile").write_text("")
    model = ("--video", "--model", "tiny-video3d", "--frames", "2") if video_run else ("--model", "tiny-sd")
    code, out, err = scv(*GEN, *model, "--res", "128x128", "--out", tmp_path / "somefile" / "sub")
    one_line_error(code, err, "somefile", "is a file, not a folder")
    code, out, err = scv(*GEN, *model, "--res", "128x128", "--out", tmp_path / "somefile")
    one_line_error(code, err, "is a file, not a folder")
    for system in ("/sys/kernel", "/proc/scv-out"):
        if Path(system).parent.is_dir():
            code, out, err = scv(*GEN, *model, "--res", "128x128", "--out", system)
            one_line_error(code, err, f"'{system}", "is in the system folder", "pass another --out")
    code, out, err = scv(*GEN, *model, "--res", "128x128", "--out", "")
    one_line_error(code, err, "--out is empty")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["somefile"]


# ---- 3. names unique per settings, --skip-existing ----------------------------------------------
def test_runs_with_other_settings_do_not_collide(scv, tmp_path, shared_tiny_sd):
    base = (*GEN, "--model", "tiny-sd", "--prompt", "same", "--res", "128x128", "--out", tmp_path)
    paths = set()
    for extra in (
        (),
        ("--steps", "1"),
        ("--no-ndcfg",),
        ("--guidance", "3"),
        ("--scheduler", "euler"),
        ("--preset", "auto", "--no-progressive"),
    ):
        code, out, err = scv(*base, *extra)
        assert code == 0, (extra, err)
        paths.add(out.strip())
    assert len(paths) == 6 and all(Path(p).name.startswith("same-128x128-scalecrafter-seed0-") for p in paths)
    code, out, err = scv(*base)  # the very same settings again: refused, not renamed
    one_line_error(code, err, "already exists", "--overwrite")


def test_non_latin_prompts_keep_their_letters(scv, tmp_path, shared_tiny_sd):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("富士山と桜\n富士山と桜!\nКот в сапогах\n", encoding="utf-8")
    code, out, err = scv(
        *GEN,
        "--model",
        "tiny-sd",
        "--prompts",
        prompts,
        "--res",
        "64x64",
        "--out",
        tmp_path / "o",
        "--method",
        "direct",
    )
    assert code == 0, err
    names = [Path(p).name for p in out.split()]
    assert len(set(names)) == 3
    assert names[0].startswith("富士山と桜-64x64-direct-seed0-") and names[1].startswith(
        "富士山と桜-64x64-direct-seed1-"
    )
    assert names[2].startswith("кот-в-сапогах-64x64-direct-seed2-")


def test_skip_existing_resumes_a_100_prompt_batch(scv, tmp_path, monkeypatch, shared_tiny_sd):
    from diffusers import StableDiffusionPipeline

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"prompt number {k}\n" for k in range(100)))
    args = (
        *GEN[:2],
        "--steps",
        "1",
        "--model",
        "tiny-sd",
        "--prompts",
        prompts,
        "--res",
        "64x64",
        "--method",
        "direct",
        "--out",
        tmp_path / "o",
    )
    real_call = StableDiffusionPipeline.__call__
    calls = {"n": 0, "stop_at": 38}

    def counting_call(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == calls["stop_at"]:
            raise KeyboardInterrupt  # Ctrl-C while the 38th image samples
        return real_call(self, *a, **k)

    monkeypatch.setattr(StableDiffusionPipeline, "__call__", counting_call)
    code, out, err = scv(*args)
    assert code == 130 and "interrupted" in err
    first = {p: p.stat().st_mtime_ns for p in (tmp_path / "o").iterdir()}
    assert len(first) == 2 * 37 and not any(p.name.startswith(".") for p in first)

    code, out, err = scv(*args)  # without --skip-existing or --overwrite: refused, nothing redone
    one_line_error(code, err, "already exists", "(and 73 more)")
    calls.update(n=0, stop_at=0)
    code, out, err = scv(*args, "--skip-existing")
    assert code == 0, err
    assert calls["n"] == 63  # only the unfinished items were sampled
    assert "37 of 100 images exist already and are skipped" in err
    assert len(out.split()) == 63
    assert all(p.stat().st_mtime_ns == t for p, t in first.items())
    assert len(list((tmp_path / "o").glob("*.png"))) == 100 and len(list((tmp_path / "o").glob("*.json"))) == 100

    calls.update(n=0)
    code, out, err = scv(*args, "--skip-existing")  # all done: nothing sampled, nothing loaded
    assert code == 0 and calls["n"] == 0 and out == ""
    code, out, err = scv(*args, "--skip-existing", "--overwrite")
    one_line_error(code, err, "not allowed with argument")


def test_skip_existing_refuses_a_half_written_item(scv, tmp_path, no_loading):
    from scalecrafter_video.jobs.options import GenerateOptions

    opts = GenerateOptions(prompts=["x"], height=64, width=64, model="tiny-sd", steps=2, out_dir=tmp_path)
    png = targets(opts)[0].path
    png.write_bytes(b"png without its sidecar")
    code, out, err = scv(
        *GEN, "--model", "tiny-sd", "--prompt", "x", "--res", "64x64", "--out", tmp_path, "--skip-existing"
    )
    one_line_error(code, err, png.name, "exists but", "--overwrite")


def test_api_refuses_skip_existing_with_overwrite(tmp_path):
    from scalecrafter_video.jobs.options import GenerateOptions

    with pytest.raises(ScaleCrafterError, match="pass one of them"):
        run_job(
            GenerateOptions(
                prompts=["x"],
                height=64,
                width=64,
                model="tiny-sd",
                out_dir=tmp_path,
                overwrite=True,
                skip_existing=True,
            )
        )


# ---- 4. memory estimate before work; interruptible decode ---------------------------------------
def test_huge_size_refused_before_loading(scv, tmp_path, monkeypatch, no_loading):
    monkeypatch.setattr(resources, "available_memory", lambda device: 8 * GIB)  # the machine
    code, out, err = scv(
        *GEN, "--model", "tiny-sd", "--res", "16384x16384", "--method", "direct", "--out", tmp_path / "o"
    )
    line = one_line_error(
        code,
        err,
        "--res 16384x16384 needs at least",
        "UNet activations",
        "VAE decode",
        "8.0 GiB free",
        "--force-memory",
    )
    assert not (tmp_path / "o").exists()
    need = float(line.split("needs at least ")[1].split(" GiB")[0])
    assert need > 30  # a 2048x2048 latent: ~25 GiB of UNet activations alone on tiny-sd


def test_force_memory_goes_on_to_loading(scv, tmp_path, monkeypatch, no_loading):
    monkeypatch.setattr(resources, "available_memory", lambda device: 1)
    code, out, err = scv(*GEN, "--model", "tiny-sd", "--res", "128x128", "--out", tmp_path, "--force-memory")
    assert code == 1 and "a model was loaded" in err  # past the memory check, into loading
    assert "--force-memory" in err and "going on" in err


def test_video_memory_refused_before_loading(scv, tmp_path, monkeypatch, no_loading):
    monkeypatch.setattr(resources, "available_memory", lambda device: 2 * GIB)
    code, out, err = scv(
        *GEN, "--video", "--model", "tiny-video", "--res", "2048x2048", "--frames", "32", "--out", tmp_path / "o"
    )
    one_line_error(code, err, "with 32 frames needs at least", "--force-memory")
    assert not (tmp_path / "o").exists()


def test_memory_estimate_scales_with_the_job():
    from scalecrafter_video.models.tiny import TINY_UNET_CONFIGS, TINY_VAE_CONFIG

    unet, vae = TINY_UNET_CONFIGS["tiny-sd"], TINY_VAE_CONFIG

    def est(**kw):
        return resources.estimate_memory(unet, vae, **{"height": 1024, "width": 1024, "dtype_bytes": 4, **kw})

    small, big = est(), est(height=4096, width=4096)
    assert big.unet == 16 * small.unet and big.latents == 16 * small.latents and big.output == 16 * small.output
    assert est(cfg=False).unet * 2 == small.unet and est(dtype_bytes=2).unet * 2 == small.unet
    assert est(height=4096, width=4096, tiled=True).decode < big.decode
    assert est(frames=8, decode_frames=2).decode == 2 * small.decode and est(frames=8).unet == 8 * small.unet
    # tiny-sd in fp32 on a CPU measured 36 first-level maps at 2048 px; the estimate stays below
    assert est(height=2048, width=2048).unet == 24 * 2 * 32 * 256 * 256 * 4


def test_available_memory_reads_the_host():
    ram = resources.available_memory("cpu")
    assert ram is None or ram > 0
    assert resources.available_memory("mps") is None


def test_video_decode_stops_between_chunks_on_ctrl_c(scv, tmp_path, monkeypatch):
    monkeypatch.setattr(frames, "DECODE_PIXELS", 64 * 64)  # one frame per VAE call
    real_load = video.load_video_pipeline
    decoded = []

    def load(*a, **k):
        loaded = real_load(*a, **k)

        def count(module, args):
            decoded.append(args[0].shape[0])
            if len(decoded) == 2:
                raise KeyboardInterrupt

        loaded.pipe.vae.decoder.register_forward_pre_hook(count)
        return loaded

    monkeypatch.setattr(video, "load_video_pipeline", load)
    code, out, err = scv(
        *GEN,
        "--video",
        "--model",
        "tiny-video3d",
        "--res",
        "64x64",
        "--frames",
        "4",
        "--method",
        "direct",
        "--out",
        tmp_path,
    )
    assert code == 130 and "interrupted" in err
    assert decoded == [1, 1]  # stopped at the second of four chunks
    assert list(tmp_path.iterdir()) == []


# ---- 5. PNDM as the SD pipelines ship it; plan and generate share the scheduler -----------------
def test_pndm_generates(scv, tmp_path, shared_tiny_sd):
    code, out, err = scv(
        "generate",
        "--no-progress",
        "--model",
        "tiny-sd",
        "--res",
        "128x128",
        "--steps",
        "3",
        "--scheduler",
        "pndm",
        "--out",
        tmp_path,
    )
    assert code == 0, err
    meta = json.loads(Path(out.strip()).with_suffix(".json").read_text())
    assert meta["scheduler_class"] == "PNDMScheduler"


def test_plan_pndm_has_steps_plus_one_rows(scv):
    code, out, err = scv(
        "plan", "--family", "sd15", "--res", "1024x1024", "--scheduler", "pndm", "--steps", "10", "--json"
    )
    assert code == 0, err
    assert len(json.loads(out)["steps"]) == 11  # PLMS: the first timestep twice, no Runge-Kutta warm-up


@pytest.mark.parametrize("scheduler", ["pndm", "ddim", "dpm++", "euler-a", "unipc"])
def test_plan_timesteps_are_what_generate_runs(scv, tmp_path, shared_tiny_sd, scheduler):
    from scalecrafter_video.commands.describe import plan_rows

    seen = []
    hook = shared_tiny_sd.unet.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(float(kwargs.get("timestep", args[1] if len(args) > 1 else 0))),
        with_kwargs=True,
    )
    try:
        code, out, err = scv(
            *GEN[:2],
            "--steps",
            "5",
            "--model",
            "tiny-sd",
            "--res",
            "64x64",
            "--scheduler",
            scheduler,
            "--method",
            "direct",
            "--out",
            tmp_path,
        )
    finally:
        hook.remove()
    assert code == 0, err
    _, rows = plan_rows("sd15", 1024, 1024, 5, scheduler=scheduler)
    assert seen == [float(r["timestep"]) for r in rows]


# ---- 6. presets record family and size -------------------------------------------------------------
def test_preset_of_another_family_is_refused_before_loading(scv, tmp_path, no_loading):
    code, out, err = scv(
        *GEN, "--model", "tiny-sd", "--res", "2048x2048", "--preset", "sdxl-2048x2048", "--out", tmp_path / "o"
    )
    one_line_error(code, err, "sdxl-2048x2048", "1024x1024 pixels", "64x64 pixels", "--force-preset")
    assert not (tmp_path / "o").exists()


def test_force_preset_applies_it_as_written(scv, tmp_path, shared_tiny_sd):
    code, out, err = scv(
        *GEN,
        "--model",
        "tiny-sd",
        "--res",
        "128x128",
        "--preset",
        "sdxl-2048x2048",
        "--force-preset",
        "--out",
        tmp_path,
    )
    assert code == 0, err
    meta = json.loads(Path(out.strip()).with_suffix(".json").read_text())
    assert meta["plan"]["name"] == "sdxl-2048x2048" and meta["force_preset"] is True


@pytest.mark.parametrize(
    "args, message",
    [
        (["--res", "1024x1024", "--preset", "sd15-2048x2048"], "is for 2048x2048, not 1024x1024"),
        (["--res", "2048x2048", "--preset", "sd21-2048x2048"], "is for family 'sd21' but the model is 'sd15'"),
    ],
)
def test_plan_preset_elsewhere_needs_force(scv, args, message):
    code, out, err = scv("plan", "--family", "sd15", "--steps", "50", *args)
    one_line_error(code, err, message, "--force-preset")
    code, out, err = scv("plan", "--family", "sd15", "--steps", "50", *args, "--force-preset")
    assert code == 0, err
    assert args[-1] in out.splitlines()[0]


def test_api_preset_checks_and_plan_override(tiny_sd):
    from scalecrafter_video.engine.presets import get_preset

    with pytest.raises(ScaleCrafterError, match="trained at 1024x1024 pixels, but this one's base is 64x64 pixels"):
        apply_scalecrafter(tiny_sd, height=2048, width=2048, preset="sdxl-2048x2048")
    with pytest.raises(
        ScaleCrafterError, match="sizes are in pixels, but this model is sized in samples .a bare UNet"
    ):
        apply_scalecrafter(tiny_sd.unet, height=16, width=16, preset="sd15-1024x1024")
    try:
        handle = apply_scalecrafter(tiny_sd, height=128, width=128, preset=get_preset("sdxl-2048x2048")[1])
        assert handle.plan.name == "sdxl-2048x2048"
    finally:
        remove_scalecrafter(tiny_sd)


def test_video_preset_for_another_base_refused_before_loading(scv, tmp_path, no_loading):
    code, out, err = scv(
        *GEN,
        "--video",
        "--model",
        "tiny-video",
        "--res",
        "1024x1024",
        "--frames",
        "2",
        "--preset",
        "animatediff-1024x1024",
        "--out",
        tmp_path / "o",
    )
    one_line_error(code, err, "animatediff-1024x1024", "512x512 pixels", "64x64 pixels")


# ---- 7. one-line errors, exit 2 ---------------------------------------------------------------------
def test_binary_preset_file(scv, tmp_path):
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00")
    code, out, err = scv(*GEN, "--model", "tiny-sd", "--res", "128x128", "--preset", binary, "--out", tmp_path / "o")
    one_line_error(code, err, "binary.toml", "not UTF-8 text")
    code, out, err = scv("plan", "--family", "sd15", "--res", "1024x1024", "--preset", binary)
    one_line_error(code, err, "not UTF-8 text")


def test_plan_caps_steps_like_generate(scv):
    code, out, err = scv("plan", "--family", "sd15", "--res", "1024x1024", "--steps", "100000")
    one_line_error(code, err, "steps must be between 1 and 1000, got 100000")


def test_size_suggestions_pass(scv, tmp_path, shared_tiny_sd):
    code, out, err = scv(*GEN, "--model", "tiny-sd", "--res", "100x100", "--out", tmp_path)
    line = one_line_error(code, err, "use 64 or 128")
    for size in line.split("use ")[1].split(" or "):
        code, out, err = scv(
            *GEN, "--model", "tiny-sd", "--res", f"{size}x{size}", "--out", tmp_path, "--method", "direct"
        )
        assert code == 0, err
    code, out, err = scv(*GEN, "--model", "tiny-sd", "--res", "136x128", "--out", tmp_path)
    one_line_error(code, err, "not divisible by 64", "use 128 or 192")


def test_video_sdxl_says_what_is_missing(scv, tmp_path, empty_hf_cache):
    code, out, err = scv(*GEN, "--video", "--model", "sdxl", "--prompt", "x", "--res", "1024x1024", "--out", tmp_path)
    line = one_line_error(code, err, "SDXL video needs AnimateDiff's SDXL motion adapter")
    assert "download" not in line


@pytest.mark.parametrize(
    "flag",
    [
        ["--frames", "8"],
        ["--fps", "12"],
        ["--compare"],
        ["--save-frames"],
        ["--motion-adapter", "guoyww/animatediff-motion-adapter-v1-5-2"],
    ],
)
def test_video_flags_without_video(scv, tmp_path, flag, no_loading):
    code, out, err = scv(*GEN, "--model", "tiny-sd", "--res", "128x128", *flag, "--out", tmp_path / "o")
    one_line_error(code, err, f"{flag[0]} only applies to videos: add --video")


@pytest.mark.parametrize("model", ["zeroscope", "modelscope", "tiny-video3d", "tiny-video"])
def test_motion_adapter_on_a_model_without_one(scv, tmp_path, model, empty_hf_cache, no_loading):
    code, out, err = scv(
        *GEN,
        "--video",
        "--model",
        model,
        "--prompt",
        "x",
        "--res",
        "1024x1024",
        "--motion-adapter",
        "someone/adapter",
        "--out",
        tmp_path / "o",
    )
    one_line_error(code, err, "--motion-adapter only applies to AnimateDiff models")


def test_prompts_from_stdin_without_bom(scv, tmp_path, monkeypatch, shared_tiny_sd):
    data = "\ufeffa lighthouse\n# comment\nfog\n".encode("utf-8")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))
    code, out, err = scv(
        *GEN, "--model", "tiny-sd", "--prompts", "-", "--res", "64x64", "--out", tmp_path, "--method", "direct"
    )
    assert code == 0, err
    prompts = [json.loads(Path(p).with_suffix(".json").read_text())["prompt"] for p in out.split()]
    assert prompts == ["a lighthouse", "fog"]
    assert Path(out.split()[0]).name.startswith("a-lighthouse-")


def test_prompts_file_bom_is_dropped(tmp_path):
    from scalecrafter_video.commands.cli import read_prompts

    path = tmp_path / "p.txt"
    path.write_bytes("\ufeff# first line is a comment\nsecond\n".encode("utf-8"))
    assert read_prompts(path) == ["second"]


def test_one_download_hint_for_image_and_video(scv, tmp_path, empty_hf_cache):
    for extra in ((), ("--video",)):
        code, out, err = scv(
            *GEN, *extra, "--model", "someone/missing", "--prompt", "x", "--res", "1024x1024", "--out", tmp_path
        )
        one_line_error(code, err, "run `hf download someone/missing` on a connected machine", "--model /path")
        assert "huggingface-cli" not in err


# ---- 8. at or below the base size: said in one line ---------------------------------------------
def test_generate_at_base_size_says_so(scv, tmp_path, shared_tiny_sd):
    code, out, err = scv(*GEN, "--model", "tiny-sd", "--res", "64x64", "--out", tmp_path)
    assert code == 0, err
    notices = [line for line in err.splitlines() if "nothing to do" in line]
    assert notices == [
        "scv: ScaleCrafter has nothing to do at 64x64, at or below the base size 64x64: "
        "plan 'derived-64x64' dilates no conv, the UNet runs as trained"
    ]
    code, out, err = scv(*GEN, "--model", "tiny-sd", "--res", "128x128", "--out", tmp_path)
    assert code == 0 and "nothing to do" not in err


def test_video_at_base_size_says_so_once(scv, tmp_path):
    code, out, err = scv(
        *GEN,
        "--video",
        "--model",
        "tiny-video3d",
        "--res",
        "64x64",
        "--frames",
        "2",
        "--num-per-prompt",
        "2",
        "--out",
        tmp_path,
    )
    assert code == 0, err
    assert sum("nothing to do at 64x64" in line for line in err.splitlines()) == 1


def test_plan_at_base_size_is_one_line(scv):
    code, out, err = scv("plan", "--family", "sd15", "--res", "512x512", "--steps", "50")
    assert code == 0, err
    assert out.strip().splitlines() == [
        "ScaleCrafter has nothing to do at 512x512, at or below the base size 512x512: plan 'derived-512x512' "
        "dilates no conv, the UNet runs as trained"
    ]
