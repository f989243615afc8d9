"""Edges found by trying `scv` as a new user: output names that follow every setting that changes an
output (the family, an edited shipped preset), a reader that goes away, sizes with odd characters,
sidecars that disagree with their image, schedulers of the shapes models, a sweep refused before
its first item, missing video weights, --max-scale, --host, the ui's errors and its model box when
served to others, and system folders as outputs. Each is a one-line error with nothing written."""

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from helpers import files_in, one_line_error
from scalecrafter_video.engine import presets as preset_module
from scalecrafter_video.jobs.generate import targets
from scalecrafter_video.jobs.options import GenerateOptions

ROOT = Path(__file__).resolve().parent.parent


# ---- point 8: names follow the family and the shipped preset's content ---------------------------
def test_family_is_in_the_name_only_when_given(tmp_path):
    opts = GenerateOptions(
        prompts=["waves"], height=640, width=640, model=str(tmp_path / "t2v"), video=True, out_dir=tmp_path
    )
    modelscope, zeroscope = (targets(replace(opts, family=f))[0].path.name for f in ("modelscope", "zeroscope"))
    assert modelscope != zeroscope  # different plans, so --skip-existing must not keep the other's video
    assert "family" not in opts.output_settings()  # jobs without --family keep their names
    assert replace(opts, family="zeroscope").output_settings()["family"] == "zeroscope"


def test_a_shipped_preset_is_hashed_by_its_content(tmp_path, monkeypatch):
    opts = GenerateOptions(
        prompts=["a fox"], height=2048, width=2048, model="sd15", preset="sd15-2048x2048", out_dir=tmp_path
    )
    files = preset_module.shipped_preset_files()
    file_name, text = next((f, t) for f, t in files.items() if f == "sd15_2048x2048.toml")
    digest = opts.output_settings()["preset_sha256"]
    assert digest == preset_module.preset_sha256("sd15-2048x2048") == hashlib.sha256(text.encode()).hexdigest()
    before = targets(opts)[0].path.name
    edited = {**files, file_name: text + "\n# tuned again\n"}
    monkeypatch.setattr(preset_module, "shipped_preset_files", lambda: edited)
    assert targets(opts)[0].path.name != before
    assert preset_module.preset_sha256("auto") is None and preset_module.preset_sha256("no-such-preset") is None


# ---- point 13: --max-scale -----------------------------------------------------------------------
@pytest.fixture
def shared_tiny_sd(monkeypatch, tiny_sd):
    from scalecrafter_video.models import tiny

    monkeypatch.setattr(tiny, "tiny_pipeline", lambda name: tiny_sd)
    return tiny_sd


def test_max_scale_is_a_generate_flag_and_the_error_names_it(scv, tmp_path, shared_tiny_sd):
    out = tmp_path / "out"
    gen = ("generate", "--model", "tiny-sd", "--res", "576x576", "--steps", 1, "--no-progress", "--out", out)
    code, _, err = scv(*gen)  # 9x tiny-sd's 64 px per side
    one_line_error(code, err, "above max_scale=8", "--max-scale")
    assert files_in(out) == []
    code, _, err = scv(*gen, "--max-scale", "0.5")
    one_line_error(code, err, "--max-scale must be a finite number of at least 1")
    code, printed, err = scv(*gen, "--max-scale", 9)
    assert code == 0, err
    raised = Path(printed.strip())
    assert "--max-scale" in json.loads(raised.with_suffix(".json").read_text())["command"]
    # a limit on the sizes allowed, not on the pixels: the same image keeps its name whatever the limit
    assert "max_scale" not in GenerateOptions(prompts=["x"], height=64, width=64, max_scale=9.0).output_settings()


def test_max_scale_is_a_sweep_flag(scv, tmp_path, monkeypatch):
    from scalecrafter_video.commands.sweep import run as sweep_run

    def stop(cfg):  # the sweep itself is tested in test_sweep.py: here only what reaches it
        raise sweep_run.ScaleCrafterError(f"stopped with max_scale={cfg.template.max_scale:g}")

    monkeypatch.setattr(sweep_run, "run_sweep", stop)
    (tmp_path / "p.txt").write_text("a fox\n")
    code, _, err = scv(
        "sweep",
        "--model",
        "tiny-sd",
        "--prompts",
        tmp_path / "p.txt",
        "--res",
        "576x576",
        "--out",
        tmp_path / "sweep",
        "--max-scale",
        12,
    )
    one_line_error(code, err, "stopped with max_scale=12")


# ---- point 12: a reader that goes away, odd sizes, sidecars that disagree -------------------------
def test_a_closed_pipe_stops_scv_quietly_with_141():
    """`scv plan ... | head -1`: the reader is gone before scv writes (closed at once here, so the write
    surely fails); scv stops with 128 + SIGPIPE and says nothing."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "scalecrafter_video",
            "plan",
            "--family",
            "sd15",
            "--res",
            "2048x2048",
            "--steps",
            "50",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 141 and err == ""


@pytest.mark.parametrize("res", ["6\u00b2x64", "+-64x64", "64x\uff16\uff14", "64x--64"])
def test_res_takes_ascii_digits_only(scv, res):
    code, _, err = scv("plan", "--family", "sd15", "--res", res)
    one_line_error(code, err, f"--res {res!r} is not WIDTHxHEIGHT")


def _image_with_sidecar(folder: Path, name: str, size: tuple[int, int], recorded: tuple[int, int]) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    Image.new("RGB", size, (200, 30, 30)).save(path)
    path.with_suffix(".json").write_text(
        json.dumps({"method": "direct", "width": recorded[0], "height": recorded[1], "model": "m"})
    )
    return path


def test_eval_refuses_a_sidecar_whose_size_disagrees_with_its_image(scv, tmp_path):
    gen = tmp_path / "gen"
    for i in range(3):
        _image_with_sidecar(gen, f"ok{i}", (64, 64), (64, 64))
    bad = _image_with_sidecar(gen, "liar", (64, 32), (64, 64))
    out = tmp_path / "eval.json"
    code, _, err = scv(
        "eval", "--generated", gen, "--features", "random", "--base", gen, "--json", out, "--no-progress"
    )
    one_line_error(code, err, str(bad), "64x32 pixels but its sidecar says 64x64")
    assert not out.exists()


# ---- point 13: every scheduler on the shapes models -----------------------------------------------
@pytest.mark.parametrize("scheduler", ["ddim", "pndm", "euler", "euler-a", "dpm++", "unipc"])
def test_every_scheduler_samples_shapes32(scv, tmp_path, scheduler):
    code, printed, err = scv(
        "generate",
        "--model",
        "shapes32",
        "--prompt",
        "circle",
        "--res",
        "64x64",
        "--steps",
        2,
        "--scheduler",
        scheduler,
        "--no-progress",
        "--out",
        tmp_path,
    )
    assert code == 0, err
    side = json.loads(Path(printed.strip()).with_suffix(".json").read_text())
    assert side["scheduler"] == scheduler


def test_a_scheduler_without_eta_samples_the_motion_model(scv, tmp_path):
    code, printed, err = scv(
        "generate",
        "--video",
        "--model",
        "shapes32-motion",
        "--prompt",
        "square",
        "--res",
        "64x64",
        "--frames",
        2,
        "--steps",
        2,
        "--scheduler",
        "unipc",
        "--no-progress",
        "--out",
        tmp_path,
    )
    assert code == 0, err
    assert Path(printed.strip()).suffix == ".mp4"


def test_euler_starts_from_its_first_sigma_and_draws_a_shape():
    """Euler's noise is scaled by init_noise_sigma, which is its first sigma only after set_timesteps:
    scaled before, 20 steps end in noise, not in a shape in [-1, 1]."""
    import torch

    from scalecrafter_video.jobs.sampling import make_scheduler
    from scalecrafter_video.models.shapes.model import load_demo_model
    from scalecrafter_video.models.shapes.pipeline import ShapesPipeline

    pipe = ShapesPipeline.from_model(load_demo_model())
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = make_scheduler("euler", pipe.scheduler.config)
    x = pipe(
        "triangle", num_inference_steps=20, generator=torch.Generator().manual_seed(0), output_type="latent"
    ).images
    assert x.abs().max() < 1.5 and x.std() < 0.6


# ---- point 13: a sweep that fails before its first item leaves no settings behind -----------------
def test_a_sweep_that_fails_before_any_item_leaves_no_sweep_json(scv, tmp_path, monkeypatch, shared_tiny_sd):
    from scalecrafter_video.jobs.runner import Runner

    prompts = tmp_path / "p.txt"
    prompts.write_text("a fox\n")
    out = tmp_path / "sweep"
    args = (
        "sweep",
        "--model",
        "tiny-sd",
        "--prompts",
        prompts,
        "--res",
        "128x128",
        "--methods",
        "direct",
        "--out",
        out,
        "--device",
        "cpu",
        "--no-progress",
    )

    def broken(self, opts, prompt, seed):
        raise TypeError("step() got an unexpected keyword argument 'eta'")

    with monkeypatch.context() as patch:
        patch.setattr(Runner, "sample", broken)
        code, _, err = scv(*args, "--steps", 2)
    assert code == 1 and "unexpected TypeError" in err
    assert not (out / "sweep.json").exists() and not (out / "manifest").exists()
    assert "stopped: TypeError" in (out / "logs" / "rank000.log").read_text()  # the log says what happened
    code, stdout, err = scv(*args, "--steps", 1)  # other settings: the folder is not locked to the failed ones
    assert code == 0, err
    assert json.loads((out / "sweep.json").read_text())["steps"] == 1


def test_a_sweep_keeps_its_settings_once_an_item_is_recorded(tmp_path):
    from scalecrafter_video.commands.sweep.manifest import (
        ManifestWriter,
        check_settings,
        forget_unstarted,
    )

    assert check_settings(tmp_path, {"steps": 2, "prompts": ["a"]}, write=True)
    assert not check_settings(tmp_path, {"steps": 2, "prompts": ["a"]}, write=True)  # there already
    (tmp_path / "direct" / "64x64").mkdir(parents=True)
    (tmp_path / "direct" / "64x64" / "p00000-s000-a.png").write_bytes(b"written, not recorded")
    assert not forget_unstarted(tmp_path) and (tmp_path / "sweep.json").exists()
    (tmp_path / "direct" / "64x64" / "p00000-s000-a.png").unlink()
    with ManifestWriter(tmp_path, 0) as writer:
        writer.record({"key": "a", "path": "direct/64x64/p00000-s000-a.png"})
    assert not forget_unstarted(tmp_path) and (tmp_path / "sweep.json").exists()


# ---- point 13: a video job missing both its model and its motion adapter says both ---------------
def test_missing_sd15_and_motion_adapter_are_named_in_one_line(scv, empty_hf_cache, no_weights_or_network, tmp_path):
    out = tmp_path / "out"
    code, _, err = scv("generate", "--video", "--prompt", "waves", "--res", "1024x1024", "--out", out)
    one_line_error(
        code,
        err,
        "stable-diffusion-v1-5/stable-diffusion-v1-5",
        "guoyww/animatediff-motion-adapter-v1-5-2",
        "`hf download stable-diffusion-v1-5/stable-diffusion-v1-5` and `hf download guoyww/",
        "--motion-adapter",
    )
    assert not out.exists()
    # with the adapter cached, only the model is missing: its own message
    snapshot = empty_hf_cache / "models--guoyww--animatediff-motion-adapter-v1-5-2" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("abc")
    code, _, err = scv("generate", "--video", "--prompt", "waves", "--res", "1024x1024", "--out", out)
    line = one_line_error(code, err, "stable-diffusion-v1-5/stable-diffusion-v1-5")
    assert "motion adapter" not in line


# ---- point 13: a bad --host for scv ui is one line about the host ---------------------------------
@pytest.mark.parametrize(
    "host, message",
    [
        ("300.1.1.1", "is not a valid IP address"),
        ("192.0.2.1", "is not an address of this machine"),
        ("", "--host is empty"),
    ],
)
def test_ui_refuses_a_bad_host_in_one_line(scv, tmp_path, monkeypatch, host, message):
    pytest.importorskip("gradio")
    from scalecrafter_video.commands.ui import app

    def no_server(*args, **kwargs):
        raise AssertionError("the server was started")

    monkeypatch.setattr(app, "launch", no_server)  # before this fix a bad host reached the server
    code, out, err = scv("ui", "--model", "tiny-sd", "--host", host, "--port", 7999, "--out", tmp_path / "ui")
    line = one_line_error(code, err, message, "pass 127.0.0.1")
    assert "port" not in line and out == "" and not (tmp_path / "ui").exists()


# ---- points 13 and 10: the ui's errors stay, and served to others it runs only its listed models ----
def _ui_app(tmp_path, **kwargs):
    pytest.importorskip("gradio")
    from scalecrafter_video.commands.ui.app import App

    return App(out_dir=str(tmp_path / "out"), stage_dir=tmp_path / "stage", **kwargs)


def _ask(app, model, method="direct"):
    """`App.generate` as the page calls it."""
    return app.generate("a red fox", None, model, "128x128", method, True, False, 2.0, 0.0, 2.0, app.out_dir, False)


def test_ui_errors_stay_until_closed(tmp_path):
    import gradio as gr

    app = _ui_app(tmp_path)
    with pytest.raises(gr.Error) as caught:
        app.generate("a fox", None, "tiny-sd", "12x", "direct", True, False, 2.0, 0.0, 2.0, app.out_dir, False)
    assert "--res '12x' is not WIDTHxHEIGHT" in caught.value.message
    assert caught.value.duration is None  # Gradio's default hides it after 10 s, leaving a bare "Error"


def test_ui_served_to_others_runs_only_the_listed_models(tmp_path, empty_hf_cache, shared_tiny_sd):
    import gradio as gr

    from scalecrafter_video.commands.ui.app import build_app

    folder = tmp_path / "some-model"
    folder.mkdir()
    (folder / "model_index.json").write_text("{}")
    app = _ui_app(tmp_path, fixed_out_dir=True, fixed_models=True, model="tiny-sd")
    for model in (str(folder), "stabilityai/stable-diffusion-2-1", "sd15"):  # a folder, a hub id, an uncached alias
        with pytest.raises(gr.Error) as caught:
            _ask(app, model)
        assert "runs only the models in its list" in caught.value.message and model in caught.value.message
        assert "\n" not in caught.value.message and caught.value.duration is None
        with pytest.raises(gr.Error, match="runs only the models in its list"):
            app.model_changed(model)
    assert files_in(tmp_path / "out") == []
    assert Path(_ask(app, "tiny-sd")[0]["value"]).is_file()  # a listed model runs
    page = build_app(app, "tiny-sd")
    box = next(b for b in page.blocks.values() if isinstance(b, gr.Dropdown) and b.label == "model")
    assert not box.allow_custom_value and [c[1] for c in box.choices] == app.offered_models()
    # on localhost alone, any model may still be typed in
    assert _ui_app(tmp_path).check_model(str(folder)) is None


def test_scv_ui_shared_fixes_the_models_and_goes_offline(scv, tmp_path, monkeypatch):
    pytest.importorskip("gradio")
    from huggingface_hub import constants

    from scalecrafter_video.commands.ui import app as ui_app
    from scalecrafter_video.jobs import loading

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    seen = {}

    def no_server(page, app, **kwargs):
        seen.update(fixed_models=app.fixed_models, fixed_out_dir=app.fixed_out_dir, offline=loading.hub_offline())
        raise ui_app.ScaleCrafterError("not serving in a test")

    monkeypatch.setattr(ui_app, "launch", no_server)
    code, _, err = scv("ui", "--model", "tiny-sd", "--share", "--out", tmp_path / "ui")
    one_line_error(code, err, "not serving in a test")
    assert seen == {"fixed_models": True, "fixed_out_dir": True, "offline": True}


# ---- point 13: no output in a system folder, even as root -----------------------------------------
def test_generate_refuses_a_system_output_folder(scv, no_weights_or_network):
    assert not Path("/usr/local/scv-test").exists()
    code, _, err = scv(
        "generate", "--model", "tiny-sd", "--res", "128x128", "--steps", 1, "--out", "/usr/local/scv-test"
    )
    one_line_error(code, err, "/usr/local/scv-test", "is in the system folder /usr", "pass another --out")
    assert not Path("/usr/local/scv-test").exists()


def test_plan_refuses_a_plot_in_dev(scv):
    code, out, err = scv("plan", "--family", "sd15", "--res", "2048x2048", "--plot", "/dev/full.png")
    one_line_error(code, err, "'/dev/full.png' is in the system folder /dev", "pass another --plot")
    assert out == "" and not Path("/dev/full.png").exists()


def test_system_folders_and_the_folders_that_are_never_refused(tmp_path, monkeypatch):
    from scalecrafter_video.outputs import files

    for path in ("/usr/local/out", "/etc", "/lib64/x", "/var/lib/x", "/proc/1", "/sys/x", "/boot/x", "/"):
        assert files.system_folder(Path(path)) is not None, path
    for path in (tmp_path / "out", Path.home() / "scv-out", "/opt/data/out", "/srv/out", "/var/tmp/out"):
        assert files.system_folder(Path(path)) is None, path
    # a project checked out under a system folder writes its outputs where it runs
    monkeypatch.setattr(files.Path, "cwd", classmethod(lambda cls: Path("/usr/src/app")))
    assert files.system_folder(Path("/usr/src/app/outputs")) is None
    assert files.system_folder(Path("/usr/src/other")) == "/usr"
    # running in / protects nothing less
    monkeypatch.setattr(files.Path, "cwd", classmethod(lambda cls: Path("/")))
    assert files.system_folder(Path("/etc/x")) == "/etc"


def test_sigterm_ends_a_command_as_ctrl_c_does():
    """Schedulers, and the sweep's launcher when one process fails, stop a command with SIGTERM: inside
    a command it raises KeyboardInterrupt (so the output being written removes what it wrote); the old
    handler returns after."""
    import signal

    from scalecrafter_video.commands.cli import terminate_as_interrupt

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt, match="signal"), terminate_as_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)  # the handler runs as soon as kill returns
        pytest.fail("SIGTERM did not interrupt")
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.mark.parametrize("fps", [True, 0, -8, float("nan"), float("inf"), "8"])
def test_a_clip_rate_that_is_no_positive_number_is_refused(fps):
    from scalecrafter_video.engine.errors import ScaleCrafterError
    from scalecrafter_video.jobs.checks import validate_options

    opts = GenerateOptions(prompts=["circle"], height=64, width=64, model="shapes32-motion", video=True, fps=fps)
    with pytest.raises(ScaleCrafterError, match="fps must be a positive number"):
        validate_options(opts)
    validate_options(replace(opts, fps=29.97))  # an upscaled clip keeps its own rate
