import pytest
import torch
from omegaconf import OmegaConf

from fast_style.errors import FastStyleError
from fast_style.files import sha256_of
from fast_style.train.styles import cached_style_path, load_style_image, resolve_style_image

from .conftest import STYLE_DIR

STARRY_SHA = "0592ab0f7b51b3ce72608a95e53880bd93971e5b48f93a0ce8dfd3cbccf3d098"


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FAST_STYLE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_download_is_verified_and_cached(needs_styles, empty_cache):
    url = (STYLE_DIR / "starry_night.jpg").as_uri()  # file:// runs the real download code
    path = resolve_style_image(None, url, STARRY_SHA, "starry_night")
    assert path == cached_style_path(url, STARRY_SHA) and path.is_relative_to(empty_cache)
    assert sha256_of(path) == STARRY_SHA
    mtime = path.stat().st_mtime_ns
    assert resolve_style_image(None, url, STARRY_SHA) == path and path.stat().st_mtime_ns == mtime  # no second download


def test_download_with_wrong_sha_leaves_nothing(needs_styles, empty_cache):
    url = (STYLE_DIR / "wave.jpg").as_uri()
    with pytest.raises(FastStyleError, match="expected"):
        resolve_style_image(None, url, STARRY_SHA, "wave")
    assert not cached_style_path(url, STARRY_SHA).exists()
    assert not any(p.is_file() for p in empty_cache.rglob("*"))


def test_corrupted_cache_file_is_reported(needs_styles, empty_cache):
    url = (STYLE_DIR / "starry_night.jpg").as_uri()
    path = cached_style_path(url, STARRY_SHA)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"truncated")
    with pytest.raises(FastStyleError, match="delete the file"):
        resolve_style_image(None, url, STARRY_SHA)


def test_unreachable_url_names_the_fixes(empty_cache, tmp_path):
    url = (tmp_path / "nowhere" / "painting.jpg").as_uri()
    with pytest.raises(FastStyleError, match="style.image="):
        resolve_style_image(None, url, STARRY_SHA, "x")


def test_local_image_wins_and_is_checked_against_its_sha(needs_styles, tmp_path):
    # That style.image exists and that a style names an image or a URL is checked by the config
    # (test_validation.py); here: the local file wins over the URL and must match style.sha256.
    painting = STYLE_DIR / "starry_night.jpg"
    assert resolve_style_image(str(painting), "https://example.invalid/x.jpg", STARRY_SHA) == painting
    with pytest.raises(FastStyleError, match="does not match style.sha256"):
        resolve_style_image(str(STYLE_DIR / "wave.jpg"), None, STARRY_SHA)


def test_style_image_is_resized_by_its_longer_side(needs_styles):
    style = OmegaConf.create({"name": "s", "image": str(STYLE_DIR / "starry_night.jpg"), "size": 128})
    image = load_style_image(style)
    assert image.shape[0] == 1 and image.shape[1] == 3 and max(image.shape[-2:]) == 128
    assert image.dtype == torch.float32 and 0 <= image.min() and image.max() <= 1
