"""`scv upscale INPUT --res WxH`: the user's own image or clip as the first stage of the cascade,
checked before any weights load, named, written atomically and resumable as `scv generate`'s."""

import hashlib
import json
import wave
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scalecrafter_video.jobs.upscale import probe_input
from scalecrafter_video.models import tiny
from scalecrafter_video.outputs.media import read_video, write_mp4

UP = ("upscale", "--no-progress", "--steps", "2")


def _sidecar(path: Path) -> dict:
    return json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def shapes_clip(tmp_path_factory):
    """A 32 px shapes32-motion clip written by `scv generate`."""
    from scalecrafter_video.commands.cli import main

    out = tmp_path_factory.mktemp("clip")
    assert (
        main(
            [
                "generate",
                "--video",
                "--model",
                "shapes32-motion",
                "--prompt",
                "circle",
                "--res",
                "32x32",
                "--steps",
                "2",
                "--no-progress",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    (path,) = out.glob("*.mp4")
    return path


def test_upscale_a_shapes_clip_keeps_frames_and_fps(scv, tmp_path, shapes_clip):
    args = (*UP, shapes_clip, "--model", "shapes32-motion", "--prompt", "circle", "--res", "64x64", "--out", tmp_path)
    code, out, err = scv(*args)
    assert code == 0, err
    (path,) = [Path(p) for p in out.split()]
    assert path.name.startswith(f"{shapes_clip.stem}-64x64-upscale-8f-seed0-")
    assert read_video(path).shape == (8, 64, 64, 3) == (read_video(shapes_clip).shape[0], 64, 64, 3)
    meta = _sidecar(path)
    assert (meta["method"], meta["frames"], meta["fps"]) == ("upscale", 8, _sidecar(shapes_clip)["fps"])
    assert meta["input"]["path"] == str(shapes_clip)
    assert meta["input"]["sha256"] == hashlib.sha256(shapes_clip.read_bytes()).hexdigest()
    assert [s["size"] for s in meta["cascade"]["stages"]] == [[32, 32], [64, 64]]
    assert meta["cascade"]["stages"][0] == {"stage": 0, "size": [32, 32], "from": "input"}
    # written atomically: the clip and its sidecar, no temporaries
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, path.with_suffix(".json").name])
    # resumable as scv generate: the same job finds its output and leaves it
    code, out, err = scv(*args, "--skip-existing")
    assert code == 0 and out == "" and "exist already" in err
    code, out, err = scv(*args)
    assert code == 2 and "already exists" in err


def test_upscale_an_image_on_tiny_sd(scv, tmp_path, monkeypatch, tiny_sd):
    monkeypatch.setattr(tiny, "tiny_pipeline", lambda name: tiny_sd)
    source = tmp_path / "photo.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (60, 70, 3), dtype=np.uint8)).save(source)
    code, out, err = scv(*UP, source, "--model", "tiny-sd", "--res", "128x128", "--out", tmp_path / "o")
    assert code == 0, err
    assert "not a multiple of 64 pixels per side as the model needs: resized to 64x64" in err
    (path,) = [Path(p) for p in out.split()]
    assert Image.open(path).size == (128, 128) and path.suffix == ".png"
    meta = _sidecar(path)
    assert meta["input"]["size"] == [70, 60] and meta["input"]["resized_to"] == [64, 64]
    assert meta["kind"] == "image" and len(meta["cascade"]["stages"]) == 2


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("missing.mp4", None, "input '{}' does not exist"),
        ("broken.mp4", b"not a video at all", "input '{}' is not a readable clip"),
        ("broken.png", b"\x89PNG but not really", "input '{}' is not a readable image"),
        ("notes.txt", b"hello", "is neither an image (.png, .jpg, .jpeg) nor a clip"),
    ],
)
def test_unreadable_input_is_a_one_line_error(scv, tmp_path, no_weights_or_network, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    code, out, err = scv(*UP, path, "--model", "tiny-sd", "--res", "128x128", "--out", tmp_path / "o")
    assert code == 2 and err.startswith("scv: error: ") and err.count("\n") == 1, err
    assert message.format(path) in err
    assert not (tmp_path / "o").exists()


def test_refused_before_any_weights(scv, tmp_path, no_weights_or_network):
    source = tmp_path / "small.png"
    Image.new("RGB", (64, 64)).save(source)
    for args, message in (
        (("--res", "64x64"), "is no larger than the input (64x64): nothing to upscale"),
        (("--res", "96x128"), "width 96 is not divisible by 64 (this model needs multiples of 64"),
        (("--res", "128x128", "--restart", "1"), "restart must be above 0 and below 1"),
    ):
        code, out, err = scv(*UP, source, "--model", "tiny-sd", *args, "--out", tmp_path / "o")
        assert code == 2 and message in err and err.count("\n") == 1, (args, err)
    code, out, err = scv(*UP, source, "--model", "shapes32", "--res", "128x128", "--out", tmp_path / "o")
    assert code == 2 and "shapes32 draws one of circle, square, triangle (e.g. --prompt circle)" in err
    code, out, err = scv(*UP, source, "--model", "sd15", "--res", "1024x1024", "--out", tmp_path / "o")
    assert code == 2 and "no prompt: pass --prompt TEXT, what the input shows" in err
    assert not (tmp_path / "o").exists()


def test_a_clip_with_audio_is_probed_and_its_audio_noted(tmp_path):
    import imageio_ffmpeg

    sound = tmp_path / "tone.wav"
    with wave.open(str(sound), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000)
        w.writeframes((np.sin(np.arange(8000) / 5) * 10000).astype(np.int16).tobytes())
    clip = tmp_path / "with-audio.mp4"
    writer = imageio_ffmpeg.write_frames(
        str(clip),
        (32, 32),
        fps=4,
        audio_path=str(sound),
        audio_codec="aac",
        macro_block_size=1,
        ffmpeg_log_level="error",
    )
    writer.send(None)
    for k in range(4):
        writer.send(np.full((32, 32, 3), 40 * k, dtype=np.uint8))
    writer.close()
    probe = probe_input(clip)
    assert (probe.video, probe.frames, probe.fps, probe.size, probe.audio) == (True, 4, 4, (32, 32), "aac")
    silent = tmp_path / "silent.mp4"
    write_mp4(silent, np.zeros((2, 32, 32, 3), dtype=np.uint8), 8)
    assert probe_input(silent).audio is None
