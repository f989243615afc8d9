"""Issue 9: badly typed preset files and plan dicts go through one schema (engine/schema.py) and
fail with a one-line ScaleCrafterError naming the key, what it got and what it expects."""

from pathlib import Path

import pytest

from scalecrafter_video import ScaleCrafterError, apply_scalecrafter
from scalecrafter_video.engine.plan import Plan
from scalecrafter_video.engine.presets import load_preset, presets, shipped_preset_files

GOOD = {
    "top": ['name = "custom"', 'family = "sd15"', "height = 1024", "width = 1024"],
    "main": ["stop = 30", "progressive = false", 'factors = { "mid_block" = 2 }'],
    "dispersion": ["stop = 20", 'layers = ["mid_block"]'],
}

# (section, key, bad TOML value, the key as the message names it, what it got)
BAD_FILES = [
    ("main", "stop", '"thirty"', "'main.stop'", "'thirty'"),
    ("main", "factors", "2", "'main.factors'", "got 2"),
    ("dispersion", "layers", '"mid_block"', "'dispersion.layers'", "'mid_block'"),
    ("main", "progressive", '"false"', "'main.progressive'", "'false'"),
    ("top", "height", '"2048"', "'height'", "'2048'"),
    ("main", "factors", '{ "mid_block" = "2" }', "'main.factors.\"mid_block\"'", "'2'"),
]

GOOD_DICT = {
    "name": "custom",
    "main": [{"selector": "mid_block", "factor": 2, "stop": 30, "progressive": False}],
    "dispersion": ["mid_block"],
    "dispersion_stop": 20,
    "target": [1024, 1024],
}

# (key, bad value, the key as the message names it, what it got); "main[0].x" edits the first rule
BAD_DICTS = [
    ("main[0].stop", "thirty", "'main[0].stop'", "'thirty'"),
    ("main", 2, "'main'", "got 2"),
    ("main[0].factor", "2", "'main[0].factor'", "'2'"),
    ("dispersion", "mid_block", "'dispersion'", "'mid_block'"),
    ("main[0].progressive", "false", "'main[0].progressive'", "'false'"),
    ("target", ["2048", "2048"], "'target'", "['2048', '2048']"),
    ("num_train_timesteps", 1000.5, "'num_train_timesteps'", "1000.5"),
]


def preset_text(section: str | None = None, key: str | None = None, value: str | None = None) -> str:
    lines = []
    for name, entries in GOOD.items():
        if name != "top":
            lines.append(f"[{name}]")
        lines += [e for e in entries if not (name == section and e.split(" = ")[0] == key)]
        if name == section:
            lines.append(f"{key} = {value}")
    return "\n".join(lines) + "\n"


def bad_dict(key: str, value) -> dict:
    data = {k: [dict(r) for r in v] if k == "main" else v for k, v in GOOD_DICT.items()}
    if key.startswith("main[0]."):
        data["main"][0][key.split(".", 1)[1]] = value
    else:
        data[key] = value
    return data


def assert_names(exc: pytest.ExceptionInfo, *needles: str) -> None:
    message = str(exc.value)
    assert "\n" not in message, message
    for needle in needles:
        assert needle in message, (needle, message)


def test_the_good_file_and_dict_load(tmp_path):
    path = tmp_path / "good.toml"
    path.write_text(preset_text())
    family, plan = load_preset(path)
    assert family == "sd15" and plan.dispersion == ("mid_block",) and plan.main[0].progressive is False
    assert Plan.from_dict(GOOD_DICT).dispersion == ("mid_block",)


@pytest.mark.parametrize("section, key, value, named, got", BAD_FILES, ids=[f"{b[1]}={b[2]}" for b in BAD_FILES])
def test_bad_preset_file_names_the_key(tmp_path, section, key, value, named, got):
    path = tmp_path / "bad.toml"
    path.write_text(preset_text(section, key, value))
    with pytest.raises(ScaleCrafterError) as exc:
        load_preset(path)
    assert_names(exc, str(path), named, got, "must be")


def test_a_layer_string_is_not_split_into_characters(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(preset_text("dispersion", "layers", '"mid_block"'))
    with pytest.raises(ScaleCrafterError) as exc:
        load_preset(path)
    assert "'m'" not in str(exc.value)
    with pytest.raises(ScaleCrafterError) as exc:
        Plan.from_dict(bad_dict("dispersion", "mid_block"))
    assert "'m'" not in str(exc.value)


def test_every_bad_key_of_a_file_is_named_on_one_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(preset_text("main", "stop", '"thirty"').replace("height = 1024", 'height = "2048"'))
    with pytest.raises(ScaleCrafterError) as exc:
        load_preset(path)
    assert_names(exc, "'main.stop'", "'height'")


@pytest.mark.parametrize("key, value, named, got", BAD_DICTS, ids=[b[0] for b in BAD_DICTS])
def test_bad_plan_dict_names_the_key(key, value, named, got):
    with pytest.raises(ScaleCrafterError) as exc:
        Plan.from_dict(bad_dict(key, value))
    assert_names(exc, "plan dict", named, got, "must be")


@pytest.mark.parametrize("key, value, named, got", BAD_DICTS[:3], ids=[b[0] for b in BAD_DICTS[:3]])
def test_bad_plan_dict_through_apply_leaves_the_unet_alone(tiny_sd, key, value, named, got):
    with pytest.raises(ScaleCrafterError) as exc:
        apply_scalecrafter(tiny_sd, 128, 128, preset=bad_dict(key, value))
    assert_names(exc, named)
    assert not [m for m in tiny_sd.unet.modules() if "_conv_forward" in m.__dict__]
    assert not tiny_sd.unet._forward_pre_hooks and not tiny_sd.unet._forward_hooks


@pytest.mark.parametrize("preset", [5, None, 2.0, ["sd15-1024x1024"]])
def test_a_preset_of_the_wrong_type_is_one_line(tiny_sd, preset):
    for size in ((128, 128), (None, None)):
        with pytest.raises(ScaleCrafterError) as exc:
            apply_scalecrafter(tiny_sd, *size, preset=preset)
        assert_names(exc, "preset must be", repr(preset), type(preset).__name__)


def test_a_plan_that_is_not_a_dict_is_one_line():
    with pytest.raises(ScaleCrafterError) as exc:
        Plan.from_dict(["main"])
    assert_names(exc, "a plan must be a table")


def one_line_exit_2(code: int, err: str, *needles: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("scv: error: "), (code, err)
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.mark.parametrize("section, key, value, named, got", BAD_FILES, ids=[f"{b[1]}={b[2]}" for b in BAD_FILES])
def test_scv_plan_with_a_bad_preset_file_exits_2(scv, tmp_path, section, key, value, named, got):
    path = tmp_path / "bad.toml"
    path.write_text(preset_text(section, key, value))
    code, out, err = scv("plan", "--family", "sd15", "--res", "1024x1024", "--preset", path)
    one_line_exit_2(code, err, named, "bad.toml")
    assert out == ""


@pytest.mark.parametrize("section, key, value, named, got", BAD_FILES[:3], ids=[b[1] for b in BAD_FILES[:3]])
def test_scv_generate_with_a_bad_preset_file_exits_2(scv, tmp_path, section, key, value, named, got):
    path = tmp_path / "bad.toml"
    path.write_text(preset_text(section, key, value))
    out_dir = tmp_path / "out"
    code, _, err = scv(
        "generate",
        "--no-progress",
        "--steps",
        "2",
        "--model",
        "tiny-sd",
        "--res",
        "128x128",
        "--prompt",
        "x",
        "--out",
        out_dir,
        "--preset",
        path,
    )
    one_line_exit_2(code, err, named, "bad.toml")
    assert not out_dir.exists()


def test_every_shipped_preset_still_loads():
    assert len(presets()) == len(shipped_preset_files())
    for name, (_family, plan) in presets().items():
        assert plan.source == "preset" and plan.main, name
        assert Plan.from_dict(plan.to_dict()) == plan, name


def test_shipped_presets_as_files_load_the_same(tmp_path):
    for file_name, text in shipped_preset_files().items():
        path = Path(tmp_path / file_name)
        path.write_text(text)
        family, plan = load_preset(path)
        assert presets()[plan.name] == (family, plan), file_name
