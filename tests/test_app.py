"""The web app through its API (gradio_client on a local port): same pixels as stylize.py, bad
uploads answered with a message, concurrent requests, models chosen by name only, safe settings."""

from __future__ import annotations

import concurrent.futures
import os
import sys
import time

import numpy as np
import pytest
from PIL import Image

from fast_style.config.cli import compose, load_config
from fast_style.errors import FastStyleError
from fast_style.webapp.settings import AUTH_ENV, find_models, is_loopback, settings_from_config

from .app_support import free_port, write_tiny_model
from .conftest import ROOT, assert_one_line_error, skimage_photo

pytest.importorskip("gradio", reason='the web app needs the app extra: pip install -e ".[app]"')
from gradio_client import Client, handle_file  # noqa: E402

MAX_MEGAPIXELS = 1.0
MAX_UPLOAD_MB = 1.0


def compose_app(*overrides: str):
    return compose("app", list(overrides))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("app_models")
    return {
        "alpha": write_tiny_model(root / "checkpoints" / "alpha" / "run1" / "final.ckpt", "alpha", seed=1),
        "beta": write_tiny_model(root / "elsewhere" / "beta.ckpt", "beta", seed=2),
    }


@pytest.fixture(scope="module")
def app(models):
    from fast_style.webapp.ui import serve

    cfg = compose_app(
        f"ckpt=[{models['beta']}]",
        f"checkpoints_dir={models['alpha'].parents[2]}",
        f"port={free_port()}",
        f"max_megapixels={MAX_MEGAPIXELS}",
        f"max_upload_mb={MAX_UPLOAD_MB}",
        "device=cpu",
        "concurrency=2",
    )
    running = serve(settings_from_config(cfg), block=False)
    yield running
    running.close()
    assert not running.temp_dir.exists()  # the server's private folder goes with it


@pytest.fixture
def client(app, tmp_path):
    return Client(app.url, verbose=False, download_files=str(tmp_path / "downloads"), analytics_enabled=False)


@pytest.fixture
def cat(tmp_path):
    path = tmp_path / "cat.png"
    Image.fromarray(skimage_photo("chelsea")[40:191, 60:263]).save(path)  # odd size
    return path


def stylize_api(client, photo, style="alpha", strength=1.0, preserve=False, scale=1.0, size="original"):
    image, info = client.predict(handle_file(str(photo)), style, strength, preserve, scale, size, api_name="/stylize")
    return np.asarray(Image.open(image).convert("RGB"), dtype=np.int16), info


def stylize_cli(model, photo, out, *overrides):
    from fast_style.infer.stylize import stylize

    stylize(load_config("stylize", [f"ckpt={model}", f"input={photo}", f"output={out}", "device=cpu", *overrides]))
    return np.asarray(Image.open(out).convert("RGB"), dtype=np.int16)


def test_the_api_gives_the_pixels_of_stylize_py(app, client, models, cat, tmp_path):
    assert app.demo.share is False and app.url.startswith("http://127.0.0.1:")
    cases = [
        ("alpha", 1.0, False, 1.0, []),
        ("beta", 0.6, True, 0.5, ["strength=0.6", "preserve_color=true", "scale=0.5"]),
    ]
    for style, strength, preserve, scale, overrides in cases:
        got, info = stylize_api(client, cat, style, strength, preserve, scale)
        expected = stylize_cli(models[style], cat, tmp_path / f"{style}.png", *overrides)
        assert got.shape == expected.shape == (151, 203, 3)
        assert np.abs(got - expected).max() <= 1, style  # at most one 8-bit rounding step
        assert f"203×151 px · {style}" in info
    assert np.abs(got - np.asarray(Image.open(cat), dtype=np.int16)).mean() > 5  # it did something
    smaller, info = stylize_api(client, cat, size="512")
    assert smaller.shape == (381, 512, 3) and "512×381" in info


def test_bad_uploads_get_a_message_and_the_server_keeps_working(app, client, cat, tmp_path):
    from gradio_client.exceptions import AppError

    text = tmp_path / "notes.txt"
    text.write_text("not a photo")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(cat.read_bytes()[:2000])
    renamed = tmp_path / "text.jpg"
    renamed.write_text("hello")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    huge = tmp_path / "huge.png"  # 2 MP of a flat colour: a tiny file, too many pixels
    Image.new("RGB", (2000, 1000), (90, 120, 200)).save(huge)
    cases = {
        text: "not an image",
        renamed: "not an image",
        truncated: "damaged or truncated",
        empty: "empty",
        huge: f"above this server's limit of {MAX_MEGAPIXELS:g} MP",
    }
    for path, message in cases.items():
        with pytest.raises(AppError) as error:
            stylize_api(client, path)
        assert message in str(error.value), (path.name, str(error.value))
        assert "Traceback" not in str(error.value)
    with pytest.raises(AppError, match="lower the output size or the stroke scale"):
        stylize_api(client, cat, scale=4.0, size="1024")
    got, _ = stylize_api(client, cat)  # still serving
    assert got.shape == (151, 203, 3)


def test_uploads_over_the_size_limit_are_refused_before_decoding(app, client, tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, (800, 800, 3), dtype=np.uint8)
    big = tmp_path / "noise.png"  # ~1.9 MB of incompressible pixels, 0.64 MP
    Image.fromarray(noise).save(big)
    assert big.stat().st_size > MAX_UPLOAD_MB * 2**20
    with pytest.raises(Exception, match="(?i)size"):  # Gradio's upload route answers 413
        stylize_api(client, big)
    # and the server's own check, for data that does not come through the upload route
    with pytest.raises(FastStyleError, match="above this server's limit"):
        app.service.open_photo(big.read_bytes())


def test_eight_concurrent_requests_all_complete(app, client, cat):
    reference, _ = stylize_api(client, cat, "beta", 0.8)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        jobs = [pool.submit(stylize_api, client, cat, "beta" if i % 2 else "alpha", 0.8) for i in range(8)]
        results = [job.result(timeout=300) for job in jobs]
    for i, (image, _) in enumerate(results):
        assert image.shape == (151, 203, 3)
        if i % 2:  # the same result (up to the rounding of kernels run on fewer threads)
            assert np.abs(image - reference).max() <= 1


def test_models_are_chosen_by_name_never_by_path(app, client, models, cat):
    from gradio_client.exceptions import AppError

    for bad in [str(models["alpha"]), str(models["beta"]), "../elsewhere/beta.ckpt", "gamma"]:
        with pytest.raises(AppError, match="not in the list of choices|unknown style"):
            stylize_api(client, cat, bad)
    service = app.service
    assert service.names == ["alpha", "beta"]
    with pytest.raises(FastStyleError, match="unknown style"):  # even if the page's own check went away
        service.model(str(models["alpha"]))


def test_nothing_uploaded_is_kept(app, client, cat):
    stylize_api(client, cat)
    kept = [p for p in app.temp_dir.rglob("*") if p.is_file()]
    assert kept and all(p.name == "stylized.png" for p in kept), kept  # results only, no "cat.png"


def test_upload_folders_are_swept_once_empty_for_a_while(app, tmp_path):
    """Emptied upload folders are not removed at once (a concurrent upload of the same photo
    would be moving its file in), only once they have been empty for ``keep_s``."""
    from fast_style.webapp.ui import UploadReader

    reader = UploadReader(app.service, tmp_path, keep_s=600)
    now = time.time()
    stale, fresh, full = (tmp_path / name for name in ("a" * 64, "b" * 64, "c" * 64))
    for folder in (stale, fresh, full):
        folder.mkdir()
    (full / "photo.png").write_bytes(b"x")
    for folder in (stale, full):
        os.utime(folder, (now - 3600, now - 3600))
    reader.sweep_empty_folders(now)
    assert not stale.exists() and fresh.is_dir() and (full / "photo.png").is_file()
    stale.mkdir()
    os.utime(stale, (now - 3600, now - 3600))
    reader.sweep_empty_folders(now + 30)  # at most one sweep a minute
    assert stale.is_dir()
    reader.sweep_empty_folders(now + 601)
    assert not stale.exists() and not fresh.exists() and full.is_dir()


def test_a_login_is_required_when_auth_is_set(models, cat, tmp_path):
    from fast_style.webapp.ui import serve

    cfg = compose_app(f"ckpt=[{models['beta']}]", "checkpoints_dir=null", f"port={free_port()}", "auth=ann:secret")
    running = serve(settings_from_config(cfg), block=False)
    try:
        with pytest.raises(Exception):  # noqa: B017 - the client cannot even read the API without a login
            Client(running.url, verbose=False, analytics_enabled=False)
        client = Client(running.url, verbose=False, auth=("ann", "secret"), download_files=str(tmp_path))
        got, _ = stylize_api(client, cat, "beta")
        assert got.shape == (151, 203, 3)
    finally:
        running.close()


def test_settings_are_safe_by_default(models, monkeypatch):
    monkeypatch.delenv(AUTH_ENV, raising=False)
    settings = settings_from_config(compose_app(f"ckpt=[{models['beta']}]", "checkpoints_dir=null"))
    assert settings.host == "127.0.0.1" and not settings.auth and settings.models == (models["beta"].resolve(),)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4") and not is_loopback("example.org")
    with pytest.raises(FastStyleError, match="needs auth|pass auth=user:password"):
        settings_from_config(compose_app(f"ckpt=[{models['beta']}]", "host=0.0.0.0"))
    monkeypatch.setenv(AUTH_ENV, "ann:secret")
    assert settings_from_config(compose_app(f"ckpt=[{models['beta']}]", "host=0.0.0.0")).auth == (("ann", "secret"),)
    with pytest.raises(FastStyleError, match="user:password"):
        settings_from_config(compose_app(f"ckpt=[{models['beta']}]", "auth=nopassword"))
    for bad in ["port=0", "max_upload_mb=-1", "concurrency=1.5", "max_megapixels=abc"]:
        with pytest.raises(FastStyleError, match="is not allowed"):
            settings_from_config(compose_app(f"ckpt=[{models['beta']}]", bad))


def test_default_models_are_every_final_ckpt_plus_the_files_passed(models, tmp_path):
    root = models["alpha"].parents[2]
    assert find_models(root, [str(models["beta"])]) == (models["alpha"].resolve(), models["beta"].resolve())
    with pytest.raises(FastStyleError, match="no models to offer"):
        find_models(tmp_path, [])
    with pytest.raises(FastStyleError, match="does not exist"):
        find_models(None, [str(tmp_path / "missing.onnx")])
    with pytest.raises(FastStyleError, match="unsupported extension"):
        find_models(None, [str(tmp_path / "notes.txt")])


def test_command_line_errors_are_one_line(models):
    import subprocess

    def run(*args, prelude=""):
        code = f"import runpy, sys; {prelude}sys.argv = ['scripts/app.py', *{list(args)!r}]; "
        code += "runpy.run_path('scripts/app.py', run_name='__main__')"
        return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)

    line = assert_one_line_error(run(prelude="sys.modules['gradio'] = None; "), "pip install -e")
    assert '".[app]"' in line
    assert_one_line_error(run(f"ckpt=[{models['beta']}]", "host=0.0.0.0"), "auth=user:password")
    assert_one_line_error(run("checkpoints_dir=null"), "no models to offer")
    assert_one_line_error(run(f"ckpt=[{models['beta']}]", "prot=80"), "unknown config key 'prot'")


def test_trained_exports_are_named_after_their_style_and_match_stylize_py(trained_run, cat, tmp_path):
    from fast_style.webapp.service import StyleService

    run_dir = trained_run[0]
    files = ["final.ckpt", "final.onnx", "final.torchscript.pt", "final.safetensors"]
    service = StyleService([run_dir / name for name in files], device="cpu")
    assert service.names == [f"starry_night · {name}" for name in files]  # one style, four files
    photo = Image.open(cat).convert("RGB")
    expected = stylize_cli(run_dir / "final.ckpt", cat, tmp_path / "cli.png")
    for name in service.names:
        got, _ = service.stylize(photo, name)
        assert np.abs(np.asarray(got, dtype=np.int16) - expected).max() <= 1, name
