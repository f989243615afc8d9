"""Output naming, no-overwrite checks, atomic writes and sidecars."""

import json
import os
import stat
from pathlib import Path

import pytest
from PIL import Image

from scalecrafter_video import ScaleCrafterError
from scalecrafter_video import outputs


def test_slugify_and_stem():
    assert outputs.slugify("A Corgi, on the BEACH!  (4k)") == "a-corgi-on-the-beach-4k"
    assert outputs.slugify("日本語") == "untitled"
    assert len(outputs.slugify("word " * 40)) <= 48 and not outputs.slugify("word " * 40).endswith("-")
    assert outputs.output_stem("a cat", 2048, 1024, "scalecrafter", 7) == "a-cat-2048x1024-scalecrafter-seed7"
    assert outputs.output_stem("a cat", 64, 64, "direct", 0, extra="f16") == "a-cat-64x64-direct-f16-seed0"
    assert outputs.sidecar_path(Path("o/x.png")) == Path("o/x.json")


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
