"""`scv ui`'s functions called directly (no server): requests become the jobs `scv generate` runs
(same checks, names, sidecars), one pipeline per model, side-by-side results, the plan figure,
the class hook of class-conditional models, and bad input as the CLI's one-line errors with
nothing written."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from scalecrafter_video.commands.ui import jobs
from scalecrafter_video.jobs import registry as models
from scalecrafter_video.jobs.loading import LoadedModel, ModelCache
from scalecrafter_video.models import tiny

gr = pytest.importorskip("gradio")
from scalecrafter_video.commands.ui.app import App, build_app  # noqa: E402

STEPS = 3


@pytest.fixture
def shared_tiny_sd(monkeypatch, tiny_sd):
    monkeypatch.setattr(tiny, "tiny_pipeline", lambda name: tiny_sd)
    return tiny_sd


@pytest.fixture
def app(tmp_path):
    return App(out_dir=str(tmp_path / "out"), stage_dir=tmp_path / "stage")


def ask(
    app,
    out=None,
    *,
    prompt="a red fox",
    shape=None,
    model="tiny-sd",
    size="128x128",
    method=jobs.SIDE_BY_SIDE,
    ndcfg=True,
    dispersion=False,
    steps=STEPS,
    seed=0,
    frames=2,
    overwrite=False,
):
    """`App.generate` as the page calls it: the page's values in the page's order."""
    return app.generate(
        prompt,
        shape,
        model,
        size,
        method,
        ndcfg,
        dispersion,
        float(steps),
        float(seed),
        float(frames),
        str(out or app.out_dir),
        overwrite,
    )


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


# ---- what the page offers -----------------------------------------------------------------------
def test_models_sizes_and_kinds_offline(empty_hf_cache):
    choices = jobs.model_choices()
    assert sorted(choices) == sorted(models.BUILTIN_MODELS)  # no weights cached: the built-in models alone
    assert choices.index("tiny-sdxl") < choices.index("tiny-video")  # image models first
    assert jobs.model_choices("my/model")[-1] == "my/model"
    assert [value for _, value in jobs.size_choices("tiny-sd")] == [
        "64x64",
        "128x128",
        "192x192",
        "256x256",
        "256x128",
    ]
    assert jobs.default_size("tiny-sd") == "128x128"
    assert jobs.size_choices("stabilityai/not-here")[0] == ("1024x1024", "1024x1024")  # base unknown offline
    assert jobs.is_video_model("tiny-video") and jobs.is_video_model("animatediff")
    assert not jobs.is_video_model("tiny-sd") and not jobs.is_video_model("sd15")


def test_a_cached_real_model_is_offered(empty_hf_cache):
    snapshot = empty_hf_cache / "models--stabilityai--stable-diffusion-2-1-base" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot / "model_index.json").write_text("{}")
    (empty_hf_cache / "models--stabilityai--stable-diffusion-2-1-base" / "refs").mkdir()
    (empty_hf_cache / "models--stabilityai--stable-diffusion-2-1-base" / "refs" / "main").write_text("abc")
    assert "sd21" in jobs.model_choices() and "sd15" not in jobs.model_choices()


def test_page_builds_on_the_default_model(app):
    page = build_app(app, steps=STEPS)
    assert isinstance(page, gr.Blocks)
    assert "generate" in {d.api_name for d in page.fns.values()}


# ---- requests are scv generate's jobs -------------------------------------------------------------
def test_side_by_side_runs_scalecrafter_first_with_the_generate_command(tmp_path):
    request = jobs.Request("a fox", "tiny-sd", "128x128", jobs.SIDE_BY_SIDE, str(tmp_path), steps=STEPS, seed=5)
    sc, direct = jobs.job_options(request)
    assert (sc.method, direct.method) == ("scalecrafter", "direct")
    assert (sc.width, sc.height, sc.seed, sc.steps, sc.video) == (128, 128, 5, STEPS, False)
    assert sc.skip_existing and not sc.overwrite
    assert sc.command == [
        "scv",
        "generate",
        "--model",
        "tiny-sd",
        "--prompt",
        "a fox",
        "--res",
        "128x128",
        "--method",
        "scalecrafter",
        "--steps",
        str(STEPS),
        "--seed",
        "5",
        "--out",
        str(tmp_path),
    ]
    nd = jobs.job_options(replace(request, method="scalecrafter", ndcfg=False, dispersion=True))[0]
    assert nd.command[-2:] == ["--no-ndcfg", "--dispersion"]
    sc, direct = jobs.job_options(replace(request, ndcfg=False, dispersion=True))
    assert (sc.ndcfg, sc.dispersion) == (False, True)
    assert (direct.ndcfg, direct.dispersion) == (True, False)  # the toggles are ScaleCrafter's alone
    assert direct.command == [*sc.command[:9], "direct", *sc.command[10:-2]]


def test_side_by_side_writes_what_generate_writes(app, scv, tmp_path, shared_tiny_sd):
    left, left_video, right, right_video, status, sidecars, files, plan = ask(app)
    out = Path(app.out_dir)
    assert (left["label"], right["label"]) == ("direct", "ScaleCrafter")
    assert left["visible"] and right["visible"] and not left_video["visible"] and not right_video["visible"]
    for update in (left, right):
        assert Image.open(update["value"]).size == (128, 128)
    assert sidecars["direct"]["method"] == "direct" and sidecars["ScaleCrafter"]["plan"]["name"] == "derived-128x128"
    assert sidecars["ScaleCrafter"]["seed"] == sidecars["direct"]["seed"] == 0
    written = files_in(out)
    assert len(written) == 4 and sorted(Path(f).name for f in files) == written  # outputs and sidecars offered
    assert "**direct**" in status and "**ScaleCrafter**" in status and "UNet calls" in status
    assert plan["visible"] and Image.open(plan["value"]).format == "PNG"
    # the recorded command is `scv generate` of the same job: it names its output the same way
    command = sidecars["ScaleCrafter"]["command"]
    again = tmp_path / "again"
    code, printed, err = scv(*command[1 : command.index("--out")], "--out", again, "--no-progress")
    assert code == 0, err
    assert Path(printed.strip()).name == Path(right["value"]).name
    assert Path(printed.strip()).read_bytes() == (out / Path(right["value"]).name).read_bytes()


def test_same_request_shows_the_existing_output_unless_overwrite(app, shared_tiny_sd):
    first = ask(app, method="direct")
    path = Path(app.out_dir) / Path(first[0]["value"]).name
    stamp = path.stat().st_mtime_ns
    again = ask(app, method="direct")
    assert "existing output shown" in again[4] and path.stat().st_mtime_ns == stamp
    fresh = ask(app, method="direct", overwrite=True)
    assert "existing output shown" not in fresh[4] and path.stat().st_mtime_ns != stamp
    assert not first[7]["visible"]  # no plan figure without ScaleCrafter


def test_one_pipeline_per_model(app, monkeypatch, tiny_sd):
    built = []
    monkeypatch.setattr(tiny, "tiny_pipeline", lambda name: built.append(name) or tiny_sd)
    ask(app)
    ask(app, method="attn-sf", seed=1)
    assert built == ["tiny-sd"] and len(app.cache) == 1


def test_model_cache_drops_the_least_recently_used():
    cache, loads = ModelCache(size=2), []

    def load(name):
        return lambda: loads.append(name) or LoadedModel(pipe=name, ref=None, family="sd15")

    assert cache.get(("a",), load("a")).pipe == "a"
    cache.get(("b",), load("b"))
    cache.get(("a",), load("a"))  # a is the most recent now
    cache.get(("c",), load("c"))  # drops b
    cache.get(("a",), load("a"))
    cache.get(("b",), load("b"))
    assert loads == ["a", "b", "c", "b"] and len(cache) == 2


def test_video_model_side_by_side(app, tmp_path):
    updates = ask(app, model="tiny-video", size="128x128", steps=2, frames=2)
    left_image, left_video, right_image, right_video = updates[:4]
    assert not left_image["visible"] and left_video["visible"] and right_video["visible"]
    assert Path(left_video["value"]).suffix == ".mp4" and Path(right_video["value"]).stat().st_size > 0
    assert updates[5]["ScaleCrafter"]["frames"] == 2 and "--video" in updates[5]["ScaleCrafter"]["command"]
    assert updates[7]["visible"]  # the plan of the motion UNet's spatial convs
    assert len(files_in(Path(app.out_dir))) == 4


# ---- class-conditional models: the prompt is a class -----------------------------------------------
@pytest.fixture
def class_model(monkeypatch, shared_tiny_sd):
    """A built-in model that declares classes (as the shapes models will)."""
    entry = replace(models.BUILTIN_MODELS["tiny-sd"], name="tiny-classes", classes=("circle", "square", "triangle"))
    monkeypatch.setitem(models.BUILTIN_MODELS, "tiny-classes", entry)
    return "tiny-classes"


def test_classes_replace_the_prompt_field(app, class_model):
    prompt, shape, size, frames = app.model_changed(class_model)
    assert not prompt["visible"] and shape["visible"]
    assert shape["choices"] == ["circle", "square", "triangle"] and shape["value"] == "circle"
    assert size["value"] == "128x128" and not frames["visible"]
    prompt, shape, *_ = app.model_changed("tiny-sd")
    assert prompt["visible"] and not shape["visible"]


def test_the_shipped_shapes_models_open_with_their_classes_sizes_and_frames(app):
    prompt, shape, size, frames = app.model_changed("shapes32")
    assert not prompt["visible"] and shape["choices"] == ["circle", "square", "triangle"]
    assert size["value"] == "64x64" and not frames["visible"]  # 2x its 32-pixel base
    *_, frames = app.model_changed("shapes32-motion")
    assert frames["visible"] and frames["value"] == 8  # the clip length its motion modules were trained on


def test_a_class_is_the_prompt(app, class_model):
    updates = ask(app, prompt="ignored text", shape="square", model=class_model, method="direct")
    assert updates[5]["direct"]["prompt"] == "square"
    assert Path(updates[0]["value"]).name.startswith("square-128x128-direct-seed0-")


def test_a_prompt_that_is_no_class_is_refused(app, class_model):
    with pytest.raises(gr.Error, match="draws one of the classes circle, square, triangle; got 'hexagon'"):
        ask(app, shape="hexagon", model=class_model)
    assert files_in(Path(app.out_dir)) == []


# ---- bad input: the CLI's one-line errors, nothing written ------------------------------------------
@pytest.mark.parametrize(
    "change, message",
    [
        (dict(size="12x"), "--res '12x' is not WIDTHxHEIGHT"),
        (dict(size="104x104"), "width 104 is not divisible by 64"),
        (dict(prompt="  "), "empty prompt"),
        (dict(steps=0), "steps must be between 1 and 1000"),
        (dict(steps=2.5), "steps must be a whole number"),
        (dict(method="fancy"), "unknown method 'fancy'"),
        (dict(model=""), "no model chosen"),
        (dict(model="nobody/nothing"), "not in the local Hugging Face cache"),
        (dict(size="640x640"), "10x the base size"),  # above ScaleCrafter's max_scale; direct alone would run
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(app, shared_tiny_sd, empty_hf_cache, change, message):
    with pytest.raises(gr.Error) as caught:
        ask(app, **change)
    text = caught.value.message
    assert message in text and "\n" not in text and "Traceback" not in text
    assert files_in(Path(app.out_dir)) == []
    assert files_in(app.stage_dir) == []


def test_an_item_with_only_its_image_is_refused(app, shared_tiny_sd):
    updates = ask(app, method="direct")
    Path(app.out_dir, Path(updates[0]["value"]).name).with_suffix(".json").unlink()
    with pytest.raises(gr.Error, match="cannot tell whether that item is finished"):
        ask(app, method="direct")


def test_unexpected_errors_are_one_line_too(app, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr(jobs, "run_jobs", boom)
    with pytest.raises(gr.Error) as caught:
        ask(app)
    assert (
        caught.value.message
        == "unexpected RuntimeError: disk on fire second line (the server's log has the traceback)"
    )


def test_a_fixed_output_folder_cannot_be_changed_from_the_page(tmp_path):
    app = App(out_dir=str(tmp_path / "out"), stage_dir=tmp_path / "stage", fixed_out_dir=True)
    with pytest.raises(gr.Error, match="writes to .* only"):
        ask(app, out=tmp_path / "elsewhere")
    assert not (tmp_path / "elsewhere").exists()


# ---- the command ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args, message",
    [
        (("--port", "0"), "--port must be between 1 and 65535"),
        (("--out", ""), "--out is empty"),
        (("--model", ""), "--model is empty"),
        (("--steps", "0"), "--steps must be at least 1"),
        (("--device", "tpu"), "unknown device 'tpu'"),
    ],
)
def test_ui_command_errors(scv, args, message):
    code, out, err = scv("ui", *args)
    assert code == 2 and err.startswith("scv: error: ") and message in err and len(err.strip().splitlines()) == 1


def test_ui_without_gradio_says_what_to_install(scv, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "gradio" else find_spec(name, *a)
    )
    code, out, err = scv("ui")
    assert code == 2 and err.strip() == "scv: error: scv ui needs gradio: pip install 'scalecrafter_video[ui]'"


def test_sidecars_are_json_files_next_to_the_outputs(app, shared_tiny_sd):
    updates = ask(app, method="scalecrafter", size="256x256")
    sidecar = Path(app.out_dir) / Path(updates[0]["value"]).with_suffix(".json").name
    meta = json.loads(sidecar.read_text())
    assert meta == updates[5]["ScaleCrafter"]
    assert meta["plan"]["ndcfg_stop"] > 0 and meta["damped_passes"] > 0  # 4x: NDCFG ran


# ---- the upscale box: scv upscale's job ----------------------------------------------------------
def test_upscale_box_runs_scv_upscales_job(app, shared_tiny_sd, tmp_path):
    assert "upscale" in {d.api_name for d in build_app(app, steps=STEPS).fns.values()}
    photo = tmp_path / "photo.png"
    Image.new("RGB", (64, 64), (200, 30, 30)).save(photo)
    updates = app.upscale(
        str(photo), "a red fox", None, "tiny-sd", "128x128", True, False, float(STEPS), 0.0, app.out_dir, False
    )
    left, right = Path(updates[0]["value"]), Path(updates[2]["value"])
    assert updates[0]["label"] == "input" and Image.open(left).size == (64, 64)
    assert Image.open(right).size == (128, 128) and right.name.startswith("photo-128x128-upscale-seed0-")
    side = updates[5]["upscaled (cascade)"]
    assert side["method"] == "upscale" and side["input"]["path"] == str(photo) and side["command"][1] == "upscale"
    assert files_in(Path(app.out_dir)) == sorted([right.name, right.with_suffix(".json").name])
    with pytest.raises(gr.Error, match="no file to upscale") as caught:
        app.upscale(None, "a red fox", None, "tiny-sd", "128x128", True, False, float(STEPS), 0.0, app.out_dir, False)
    assert caught.value.duration is None  # shown until closed, as generate's errors are
    with pytest.raises(gr.Error, match="an image needs an image model; 'tiny-video' is not one"):
        app.upscale(str(photo), "x", None, "tiny-video", "128x128", True, False, float(STEPS), 0.0, app.out_dir, False)
