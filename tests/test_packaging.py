"""Presets are package data (they load from a wheel, without the checkout), packed from the
checkout's top-level configs/, their single source."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_CONFIGS = ROOT / "scalecrafter_video" / "configs"


def test_the_top_level_configs_are_the_single_source_of_the_packaged_presets():
    """No copy to keep equal: the package's configs/ is a link to the top-level folder, which the
    wheel packs as files (scripts/wheel_smoke.py checks them byte for byte in the installed package)."""
    assert PACKAGE_CONFIGS.is_symlink(), "scalecrafter_video/configs must link to the top-level configs/"
    assert PACKAGE_CONFIGS.resolve() == (ROOT / "configs").resolve()
    assert list((ROOT / "configs").glob("*.toml")), "no presets in configs/"


def test_presets_are_declared_package_data():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "configs/*.toml" in config["tool"]["setuptools"]["package-data"]["scalecrafter_video"]


def test_presets_load_from_a_copy_of_the_package_alone(tmp_path):
    """A copy of the package with no configs/ beside it (what a wheel installs) still finds every preset."""
    import shutil

    from scalecrafter_video.engine.presets import presets

    shutil.copytree(
        ROOT / "scalecrafter_video", tmp_path / "scalecrafter_video", ignore=shutil.ignore_patterns("__pycache__")
    )
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import scalecrafter_video.engine.presets as p; "
        "assert p.__file__.startswith(sys.argv[1]), p.__file__; print(len(p.presets()))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) == len(presets()) > 0
