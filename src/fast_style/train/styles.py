"""Style paintings: a local file, or a URL + sha256 downloaded once into a cache and verified."""

from __future__ import annotations

import os
import shutil
import urllib.request
from pathlib import Path

import torch
import torch.nn.functional as F

from fast_style.errors import FastStyleError
from fast_style.files import atomic_write, sha256_of
from fast_style.images import load_image


def cache_dir() -> Path:
    """``$FAST_STYLE_CACHE`` or ``~/.cache/fast_style``."""
    return Path(os.environ.get("FAST_STYLE_CACHE", Path.home() / ".cache" / "fast_style")).expanduser()


def cached_style_path(url: str, sha256: str) -> Path:
    """Where the style image of ``url`` lives in the cache (the sha keeps versions apart)."""
    return cache_dir() / "styles" / f"{sha256[:16]}-{Path(url).name}"


def resolve_style_image(image: str | None, url: str | None, sha256: str | None, name: str = "style") -> Path:
    """Return a local, verified file for a (validated) style config.

    ``image`` (a local path) wins; otherwise ``url`` is downloaded into the cache once and its
    sha256 checked on every use, so a corrupted or swapped file is never trained on.
    """
    if image:
        path = Path(image).expanduser()
        if sha256 and sha256_of(path) != sha256:
            raise FastStyleError(
                f"style image {path} does not match style.sha256={sha256}: use the right file or set style.sha256=null"
            )
        return path
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


def load_style_image(style) -> torch.Tensor:
    """The painting of a ``style`` config as ``(1, 3, H, W)`` in [0, 1], its longer side resized to ``style.size``."""
    path = resolve_style_image(style.get("image"), style.get("url"), style.get("sha256"), style.get("name", "style"))
    image = load_image(path)
    if style.get("size"):
        h, w = image.shape[-2:]
        scale = style.size / max(h, w)
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        image = F.interpolate(image[None], size=size, mode="bicubic", antialias=True, align_corners=False)[0]
    return image.clamp(0, 1)[None]
