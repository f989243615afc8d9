"""Output naming, no-overwrite checks, atomic writes and sidecars."""

import json
import os
import stat
from pathlib import Path

import pytest
from PIL import Image

from scalecrafter_video import ScaleCrafterError
from scalecrafter_video.outputs import files as outputs


def test_slugify_keeps_letters_of_every_script():
    assert outputs.slugify("A Corgi, on the BEACH!  (4k)") == "a-corgi-on-the-beach-4k"
    assert outputs.slugify("日本語の猫") == "日本語の猫"
    assert outputs.slugify("Кот в сапогах!") == "кот-в-сапогах"
    assert outputs.slugify("नमस्ते दुनिया") == "नमस्ते-दुनिया"  # combining vowel signs stay
    assert outputs.slugify("ＦＵＬＬ　width") == "full-width"
    assert outputs.slugify("!!! ???") == "untitled"
    assert len(outputs.slugify("word " * 40)) <= 48 and not outputs.slugify("word " * 40).endswith("-")
    assert len(outputs.slugify("猫" * 100).encode()) <= 120


def test_stem_hashes_prompt_and_settings():
    stem = outputs.output_stem("a cat", 2048, 1024, "scalecrafter", 7, {"steps": 50})
    assert stem.startswith("a-cat-2048x1024-scalecrafter-seed7-") and len(stem.rsplit("-", 1)[1]) == 8
    assert outputs.output_stem("a cat", 2048, 1024, "scalecrafter", 7, {"steps": 50}) == stem
    assert outputs.output_stem("a cat", 2048, 1024, "scalecrafter", 7, {"steps": 30}) != stem
    assert outputs.output_stem("A cat!", 2048, 1024, "scalecrafter", 7, {"steps": 50}) != stem  # same slug
    assert outputs.output_stem("a cat", 64, 64, "direct", 0, {}, extra="16f").startswith(
        "a-cat-64x64-direct-16f-seed0-"
    )
    assert outputs.sidecar_path(Path("o/x.png")) == Path("o/x.json")


def test_names_differ_for_every_setting_that_changes_the_output(tmp_path):
    from scalecrafter_video.jobs.generate import targets
    from scalecrafter_video.jobs.options import GenerateOptions

    def name(**kw):
        return targets(GenerateOptions(prompts=["日本語の猫"], height=1024, width=1024, **kw))[0].path.name

    base = name()
    assert base.startswith("日本語の猫-1024x1024-scalecrafter-seed0-")
    preset = tmp_path / "p.toml"
    preset.write_text("one")
    variants = [
        dict(model="sd21"),
        dict(steps=30),
        dict(guidance=3.0),
        dict(scheduler="euler"),
        dict(eta=0.0),
        dict(preset="sd15-1024x1024"),
        dict(preset=str(preset)),
        dict(ndcfg=False),
        dict(dispersion=True),
        dict(progressive=False),
        dict(dtype="float16"),
        dict(freeu=True),
        dict(negative_prompt="blur"),
        dict(vae_tiling="on"),
        dict(method="direct"),
    ]
    names = [name(**kw) for kw in variants]
    assert len(set(names + [base])) == len(variants) + 1
    first = name(preset=str(preset))
    preset.write_text("two")  # an edited preset file is another setting
    assert name(preset=str(preset)) != first
    # options a method does not read, and output-only options, leave the name alone
    assert name(method="direct", ndcfg=False) == name(method="direct")
    assert name(overwrite=True, progress=False, device="cpu") == base
    assert targets(GenerateOptions(prompts=["日本語の犬"], height=1024, width=1024))[0].path.name != base


def test_check_targets(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    assert outputs.check_targets([a, b], overwrite=False) == [a, b]
    with pytest.raises(ScaleCrafterError, match="both be written"):
        outputs.check_targets([a, a], overwrite=True)
    b.write_text("x")
    with pytest.raises(ScaleCrafterError, match=r"b.png' already exists; pass --overwrite"):
        outputs.check_targets([a, b], overwrite=False)
    a.write_text("x")
    with pytest.raises(ScaleCrafterError, match=r"\(and 1 more\)"):
        outputs.check_targets([a, b], overwrite=False)
    assert outputs.check_targets([a, b], overwrite=True) == [a, b]
    (tmp_path / "d.png").mkdir()
    with pytest.raises(ScaleCrafterError, match="is a folder"):
        outputs.check_targets([tmp_path / "d.png"], overwrite=True)


def test_prepare_out_dir(tmp_path):
    assert outputs.prepare_out_dir(tmp_path / "x" / "y").is_dir()
    (tmp_path / "file").write_text("")
    with pytest.raises(ScaleCrafterError, match="not a folder"):
        outputs.prepare_out_dir(tmp_path / "file")


def test_atomic_write_failure_leaves_nothing(tmp_path):
    target = tmp_path / "out.png"
    target.write_text("old")

    def boom(tmp):
        tmp.write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        outputs.atomic_write(target, boom)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_atomic_write_replaces_and_keeps_umask_permissions(tmp_path):
    target = tmp_path / "img.png"
    outputs.save_image(Image.new("RGB", (8, 4), "red"), target)
    assert Image.open(target).size == (8, 4)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    outputs.save_image(Image.new("RGB", (4, 4), "blue"), target)
    assert Image.open(target).size == (4, 4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.png"]


def test_write_sidecar(tmp_path):
    side = outputs.write_sidecar(tmp_path / "x.png", {"path": tmp_path, "size": (64, 32), "n": 1})
    assert side == tmp_path / "x.json"
    assert json.loads(side.read_text()) == {"path": str(tmp_path), "size": [64, 32], "n": 1}


def test_versions():
    v = outputs.versions()
    assert {"python", "scalecrafter_video", "torch", "diffusers", "transformers"} <= set(v)
    assert all(isinstance(x, str) and x for x in v.values())


def test_atomic_dir_all_or_nothing(tmp_path):
    target = tmp_path / "frames"
    target.mkdir()
    (target / "old.png").write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with outputs.atomic_dir(target, replace=True) as tmp:
            (tmp / "new.png").write_text("half")
            raise KeyboardInterrupt
    assert [p.name for p in tmp_path.iterdir()] == ["frames"] and (target / "old.png").exists()
    with pytest.raises(ScaleCrafterError, match="exists; pass --overwrite"):
        with outputs.atomic_dir(target) as tmp:
            (tmp / "new.png").write_text("new")
    with outputs.atomic_dir(target, replace=True) as tmp:
        (tmp / "new.png").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new.png"]
    assert [p.name for p in tmp_path.iterdir()] == ["frames"]


def test_path_argument_refuses_empty():
    assert outputs.path_argument("out/x") == Path("out/x")
    with pytest.raises(
        ScaleCrafterError, match=r"--out is empty: name a folder \(use --out \. for the current folder\)"
    ):
        outputs.path_argument("")
    with pytest.raises(ScaleCrafterError, match="--json is empty: name a file$"):
        outputs.path_argument("  ", "--json", "file")


def test_check_writable_leaves_no_trace(tmp_path):
    outputs.check_writable(tmp_path / "a" / "b")
    outputs.check_writable(tmp_path)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "somefile").write_text("x")
    with pytest.raises(ScaleCrafterError, match=r"'.*somefile' is a file, not a folder; pass another --out"):
        outputs.check_writable(tmp_path / "somefile" / "sub")
    with pytest.raises(ScaleCrafterError, match="is a file"):
        outputs.check_writable(tmp_path / "somefile")
    assert [p.name for p in tmp_path.iterdir()] == ["somefile"]


@pytest.mark.parametrize("folder", ["/proc/scv-out", "/sys/kernel", "/sys/kernel/scv-out"])
def test_check_writable_refuses_system_folders(folder):
    if not Path(folder).parent.is_dir():
        pytest.skip(f"{Path(folder).parent} does not exist here")
    with pytest.raises(ScaleCrafterError, match=f"--out '{folder}' is in the system folder /(proc|sys)"):
        outputs.check_writable(Path(folder))
    assert folder == "/sys/kernel" or not Path(folder).exists()


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root may write to any folder")
def test_check_writable_refuses_read_only_folder(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(ScaleCrafterError, match="Permission denied"):
            outputs.check_writable(locked / "new")
    finally:
        locked.chmod(0o700)


def test_skip_existing(tmp_path):
    items = [(tmp_path / f"{k}.png", tmp_path / f"{k}.json") for k in range(3)]
    for p in items[0]:
        p.write_text("done")
    assert outputs.skip_existing(items, list) == items[1:]
    items[1][0].write_text("half")  # a PNG without its sidecar
    with pytest.raises(ScaleCrafterError, match=r"1.png' exists but '.*1.json' does not.*--overwrite"):
        outputs.skip_existing(items, list)
