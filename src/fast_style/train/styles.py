"""Style images: a local path, or a URL + sha256 downloaded once into a cache and verified."""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.request
from pathlib import Path

from fast_style.errors import FastStyleError
from fast_style.images import atomic_write


def cache_dir() -> Path:
    """``$FAST_STYLE_CACHE`` or ``~/.cache/fast_style``."""
    return Path(os.environ.get("FAST_STYLE_CACHE", Path.home() / ".cache" / "fast_style")).expanduser()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cached_style_path(url: str, sha256: str) -> Path:
    """Where the style image of ``url`` lives in the cache (the sha keeps versions apart)."""
    return cache_dir() / "styles" / f"{sha256[:16]}-{Path(url).name}"


def resolve_style_image(image: str | None, url: str | None, sha256: str | None, name: str = "style") -> Path:
    """Return a local, verified file for a style config.

    ``image`` (a local path) wins; otherwise ``url`` is downloaded into the cache once and its
    sha256 checked on every use, so a corrupted or swapped file is never trained on.
    """
    if image:
        path = Path(image).expanduser()
        if not path.is_file():
            raise FastStyleError(
                f"style image {path} does not exist: fix style.image or pick a built-in style, e.g. style=starry_night"
            )
        if sha256 and sha256_of(path) != sha256:
            raise FastStyleError(
                f"style image {path} does not match style.sha256={sha256}: use the right file or set style.sha256=null"
            )
        return path
    if not url:
        raise FastStyleError(f"style {name!r} names no image: set style.image=/path/to/painting.jpg")
    if not sha256:
        raise FastStyleError(
            f"style {name!r} has a URL but no sha256: set style.sha256 so the download can be verified"
        )
    path = cached_style_path(url, sha256)
    if path.is_file():
        actual = sha256_of(path)
        if actual == sha256:
            return path
        raise FastStyleError(
            f"cached style image {path} has sha256 {actual}, expected {sha256}: delete the file to download it again"
        )
    try:
        atomic_write(path, lambda tmp: _download(url, tmp))
    except Exception as exc:
        raise FastStyleError(
            f"could not download style {name!r} from {url} ({type(exc).__name__}: {exc}): "
            f"connect to the internet, put the file at {path}, or pass style.image=/path/to/painting.jpg"
        ) from exc
    actual = sha256_of(path)
    if actual != sha256:
        path.unlink()
        raise FastStyleError(
            f"downloaded style {name!r} from {url} has sha256 {actual}, expected {sha256}: fix style.url or style.sha256"
        )
    return path


def _download(url: str, destination: Path) -> None:
    with urllib.request.urlopen(url, timeout=60) as response, open(destination, "wb") as out:
        shutil.copyfileobj(response, out)
