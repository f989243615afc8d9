"""`scv ui` served on a free localhost port: driven through its API with gradio_client, and in a real
browser (headless Chromium through Selenium), which runs a side-by-side generation and saves a
screenshot (copied to $SCV_UI_SCREENSHOT when set; samples/ui.png is one)."""

import json
import os
import shutil
import socket
import tempfile
from pathlib import Path

import pytest
from PIL import Image

from scalecrafter_video.commands.arguments import parse_res
from scalecrafter_video.commands.ui import jobs
from scalecrafter_video.commands.ui.defaults import DEFAULT_MODEL
from scalecrafter_video.models import tiny

pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")
from scalecrafter_video.commands.ui.app import App, build_app, launch  # noqa: E402

STEPS = 4
SIZE = jobs.default_size(DEFAULT_MODEL)  # 2x the base size per side
WIDTH, HEIGHT = parse_res(SIZE)
CLASSES = jobs.model_classes(DEFAULT_MODEL)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
MISSING = [name for name, path in (("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER)) if not path]
# What a root, headless Chromium needs on a closed network (without the background-networking
# flags it keeps opening connections that are refused).
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1300",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_sd):
    """The app on 127.0.0.1, opened on the default model (tiny models: the tiny-sd pipeline shared with the
    other tests): (url, App)."""
    folder = tmp_path_factory.mktemp("ui")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tiny, "tiny_pipeline", lambda name: tiny_sd)
        app = App(out_dir=str(folder / "out"), stage_dir=folder / "stage")
        page = build_app(app, steps=STEPS)
        url, share_url = launch(page, app, host="127.0.0.1", port=free_port(), share=False)
        assert share_url is None and url.startswith("http://127.0.0.1:")
        try:
            yield url, app
        finally:
            page.close()


def test_api_scalecrafter_at_2x_returns_image_and_sidecar(server, tmp_path):
    url, app = server
    client = gradio_client.Client(url, verbose=False, download_files=str(tmp_path))
    left, _, right, _, status, sidecars, files, plan = client.predict(
        prompt="a red fox",
        shape=CLASSES[0] if CLASSES else None,
        model=DEFAULT_MODEL,
        size=SIZE,
        method="scalecrafter",
        ndcfg=True,
        dispersion=False,
        steps=STEPS,
        seed=3,
        frames=16,
        out_dir=app.out_dir,
        overwrite=False,
        api_name="/generate",
    )
    assert Image.open(left["value"]).size == (WIDTH, HEIGHT) and not right["visible"]
    sidecar_file = next(Path(f) for f in files if f.endswith(".json"))
    meta = json.loads(sidecar_file.read_text())
    assert meta == sidecars["ScaleCrafter"]
    assert (
        meta["method"] == "scalecrafter" and (meta["width"], meta["height"]) == (WIDTH, HEIGHT) and meta["seed"] == 3
    )
    assert meta["plan"]["target"] == [HEIGHT, WIDTH] and meta["plan"]["base"] == [HEIGHT // 2, WIDTH // 2]
    assert Image.open(plan["value"]).format == "PNG" and "ScaleCrafter" in status
    written = sorted(p.name for p in Path(app.out_dir).iterdir())
    assert written == sorted([Path(left["value"]).name, sidecar_file.name])


def test_api_bad_input_is_the_cli_message(server, tmp_path):
    url, app = server
    client = gradio_client.Client(url, verbose=False, download_files=str(tmp_path))
    with pytest.raises(gradio_client.exceptions.AppError) as caught:
        client.predict(
            prompt="a red fox",
            shape=CLASSES[0] if CLASSES else None,
            model=DEFAULT_MODEL,
            size="12x",
            method="scalecrafter",
            ndcfg=True,
            dispersion=False,
            steps=STEPS,
            seed=0,
            frames=16,
            out_dir=str(tmp_path / "never"),
            overwrite=False,
            api_name="/generate",
        )
    assert str(caught.value) == "--res '12x' is not WIDTHxHEIGHT, e.g. 2048x1024 (2048 wide, 1024 high)"
    assert not (tmp_path / "never").exists()


@pytest.mark.browser
@pytest.mark.skipif(
    bool(MISSING),
    reason=f"browser test not run: {' and '.join(MISSING)} not found on PATH; "
    "install them with apt-get install -y chromium chromium-driver (.ci/run does, as root)",
)
def test_browser_side_by_side(server, tmp_path):
    webdriver = pytest.importorskip(
        "selenium.webdriver", reason="browser test not run: selenium is not installed (pip install -e '.[test]')"
    )
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, app = server
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.get(url)
        WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#generate"))
        assert driver.find_element(By.CSS_SELECTOR, "#method input[value='side by side']").is_selected()
        driver.find_element(By.CSS_SELECTOR, "#generate").click()
        images = "#left-image img, #right-image img"
        WebDriverWait(driver, 120).until(
            lambda d: (
                len(d.find_elements(By.CSS_SELECTOR, images)) == 2 and d.find_elements(By.CSS_SELECTOR, "#plan img")
            )
        )
        sources = [img.get_attribute("src") for img in driver.find_elements(By.CSS_SELECTOR, images)]
        assert len(set(sources)) == 2 and all(src.endswith(".png") for src in sources)
        WebDriverWait(driver, 30).until(
            lambda d: all(
                d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img) == WIDTH
                for img in d.find_elements(By.CSS_SELECTOR, images)
            )
        )
        status = driver.find_element(By.CSS_SELECTOR, "#status").text
        assert "direct" in status and "ScaleCrafter" in status
        driver.execute_script("window.scrollTo(0, 0)")
        shot = tmp_path / "ui.png"
        assert driver.save_screenshot(str(shot))
    finally:
        driver.quit()
    assert Image.open(shot).size[0] >= 1000
    if os.environ.get("SCV_UI_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["SCV_UI_SCREENSHOT"])
    written = sorted(p.name for p in Path(app.out_dir).iterdir())
    assert any("-direct-" in name for name in written) and any("-scalecrafter-" in name for name in written)
