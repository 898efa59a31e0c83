"""The web app in a real browser: headless Chromium (Debian's ``chromium``, driven by Playwright)
against ``python scripts/app.py`` started as a user would, on a free local port.

Skipped, with the reason, where Chromium or Playwright is missing (a laptop without them); under
CI (``CI`` set) that is a failure instead: ``.ci/run`` installs Chromium.
"""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request

import pytest
from PIL import Image

from .app_support import free_port, write_tiny_model
from .conftest import ROOT, skimage_photo

FAKE_MEDIA = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
TIMEOUT_MS = 90_000  # generous: the 2-core CI machine may be busy


def chromium_path() -> str | None:
    for candidate in (os.environ.get("FAST_STYLE_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if candidate and (found := shutil.which(candidate)):
            return found
    return None


def unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: CI must run the browser tests (.ci/run installs chromium)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def chromium() -> str:
    try:
        import gradio  # noqa: F401
        import playwright  # noqa: F401
    except ImportError as exc:
        unavailable(f'{exc.name} is not installed: pip install -e ".[dev]"')
    path = chromium_path()
    if path is None:
        unavailable("chromium not found (Debian: apt-get install chromium; or set FAST_STYLE_CHROMIUM)")
    return path


@pytest.fixture(scope="module")
def server(chromium, tmp_path_factory):
    """``python scripts/app.py`` with one tiny model; yields its URL."""
    folder = tmp_path_factory.mktemp("browser_app")
    model = write_tiny_model(folder / "final.ckpt", "tiny_style", seed=3)
    port = free_port()
    log = open(folder / "server.log", "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, "scripts/app.py", f"ckpt=[{model}]", "checkpoints_dir=null", f"port={port}", "device=cpu"],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
    try:
        while True:
            assert process.poll() is None, (folder / "server.log").read_text()
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the app did not start: " + (folder / "server.log").read_text()
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=60)
        log.close()
    output = (folder / "server.log").read_text()
    assert "serving 1 styles (tiny_style)" in output
    # Nothing went wrong in the app's own code. (Uvicorn may log a FileNotFoundError when the
    # browser re-fetches the preview of an upload the app has already deleted: by design.)
    assert "fast_style/webapp" not in output and "fast_style/stylize" not in output, output


@pytest.fixture
def launch(chromium):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browsers = []

        def start(*args: str):
            browsers.append(playwright.chromium.launch(executable_path=chromium, headless=True, args=list(args)))
            page = browsers[-1].new_page(viewport={"width": 1280, "height": 820})
            page.set_default_timeout(TIMEOUT_MS)
            return page

        yield start
        for browser in browsers:
            browser.close()


def result_image(page, selector: str) -> dict:
    return page.evaluate(
        """s => { const i = document.querySelector(s);
                  return i ? {w: i.naturalWidth, h: i.naturalHeight, src: i.src, done: i.complete} : null; }""",
        selector,
    )


def wait_for_image(page, selector: str, width: int, height: int, other_than: str | None = None) -> dict:
    page.wait_for_function(
        """([s, w, h, old]) => { const i = document.querySelector(s);
              return i && i.complete && i.naturalWidth === w && i.naturalHeight === h && i.src !== old; }""",
        arg=[selector, width, height, other_than],
    )
    return result_image(page, selector)


def test_the_page_stylizes_an_uploaded_photo(server, launch, tmp_path):
    photo = tmp_path / "cat.png"
    Image.fromarray(skimage_photo("chelsea")[40:191, 60:263]).save(photo)  # 203x151
    broken = tmp_path / "broken.png"
    broken.write_bytes(photo.read_bytes()[:1500])
    page = launch()
    page.goto(server)
    upload = page.locator("#photo input[type=file]")

    # a broken file: a message on the page, no stack trace
    upload.set_input_files(broken)
    page.click("#stylize")
    toast = page.get_by_text(re.compile("cannot decode the photo"))
    toast.first.wait_for()
    assert "Traceback" not in page.inner_text("body")

    # a photo: the stylized image appears, at the photo's size, with a download button
    page.locator("#photo button[aria-label='Remove Image']").click()
    upload.set_input_files(photo)
    page.locator("#photo img").wait_for()
    page.click("#stylize")
    first = wait_for_image(page, "#result img", 203, 151)
    assert "203×151 px · tiny_style" in page.inner_text("#info")
    assert page.locator("#result button[aria-label*='ownload'], #result a[download]").count() >= 1

    # another setting on the same upload (the file itself was deleted after the first read)
    page.get_by_label("Preserve colours").check()
    page.click("#stylize")
    second = wait_for_image(page, "#result img", 203, 151, other_than=first["src"])
    assert second["src"] != first["src"]
    page.screenshot(path=str(tmp_path / "app.png"))
    if target := os.environ.get("FAST_STYLE_APP_SCREENSHOT"):
        shutil.copyfile(tmp_path / "app.png", target)


def test_the_webcam_tab_streams_stylized_frames(server, launch):
    page = launch(*FAKE_MEDIA)  # Chromium's built-in fake camera, 640x480
    page.goto(server)
    page.get_by_role("tab", name="Webcam").click()
    page.locator("#webcam").get_by_text("Click to Access Webcam").click()
    page.locator("#webcam button[aria-label='capture photo']").click()
    frames: list[str] = []
    while len(frames) < 3:  # the fake camera's picture moves: each stylized frame differs
        frames.append(wait_for_image(page, "#live img", 384, 288, other_than=frames[-1] if frames else None)["src"])
    for src in frames:  # frames come inline (JPEG data URLs) at the stylized size, not the camera's
        assert src.startswith("data:image/jpeg;base64,")
        assert Image.open(io.BytesIO(base64.b64decode(src.partition(",")[2]))).size == (384, 288)
    fps = re.search(r"([\d.]+) fps", page.inner_text("#fps"))
    assert fps and float(fps.group(1)) > 0, page.inner_text("#fps")
