"""Image codec: PIL on disk, ``(3, H, W)`` float tensors in [0, 1] (or uint8 crops) in memory."""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

from fast_style.errors import FastStyleError
from fast_style.files import atomic_write

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm"}

Image.MAX_IMAGE_PIXELS = 400_000_000  # 8K and 16K photos are legitimate input; keep a bomb limit


def decode_rgb(image: Image.Image) -> Image.Image:
    """Apply EXIF orientation and convert any mode (L, P, RGBA, CMYK, I;16, ...) to 8-bit RGB."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit greyscale: rescale to 8 bits instead of letting PIL clip at 255.
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8))
    elif image.mode == "F":
        # 32-bit float (TIFF): [0, 1] data is scaled up, anything else clipped to [0, 255].
        array = np.nan_to_num(np.asarray(image, dtype=np.float64))
        scale = 255.0 if array.size and array.max() <= 1.0 else 1.0
        image = Image.fromarray(np.clip(array * scale + 0.5, 0, 255).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


def open_rgb(path: str | Path) -> Image.Image:
    """Open an image file as RGB (EXIF-rotated); one-line ``FastStyleError`` if it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise FastStyleError(f"image {path} does not exist: check the path")
    try:
        with Image.open(path) as image:
            image.load()
            return decode_rgb(image)
    except FastStyleError:
        raise
    except Exception as exc:
        raise FastStyleError(
            f"cannot read image {path} ({type(exc).__name__}: {exc}): pass a valid image file"
        ) from exc


def decode_photo(source: Any) -> Image.Image:
    """A path, raw bytes, a PIL image or a HF ``Image`` feature dict -> RGB PIL image (raises on bad data)."""
    if isinstance(source, dict):  # HF Image(decode=False): {"bytes": ..., "path": ...}
        source = source.get("bytes") or source.get("path")
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    if isinstance(source, Image.Image):
        return decode_rgb(source)
    with Image.open(source) as image:
        image.load()
        if min(image.size) < 1:
            raise ValueError("empty image")
        return decode_rgb(image)


def resize_crop(image: Image.Image, size: int, rng: random.Random | None) -> torch.Tensor:
    """Resize the shorter side to ``size`` and crop a ``size`` square -> uint8 ``(3, size, size)``.

    ``rng=None`` takes the centre crop (deterministic), otherwise a random crop.
    """
    width, height = image.size
    scale = size / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    image = image.resize((new_w, new_h), Image.Resampling.BICUBIC, reducing_gap=3.0)
    if rng is None:
        left, top = (new_w - size) // 2, (new_h - size) // 2
    else:
        left, top = rng.randint(0, new_w - size), rng.randint(0, new_h - size)
    array = np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def crop_or_reason(source: Any, size: int, rng: random.Random | None, description: str) -> torch.Tensor | str:
    """``resize_crop(decode_photo(source))``, or for a file that cannot be decoded the string
    ``"<description> (<error type>)"``: training and packing skip and report it, never stop."""
    try:
        return resize_crop(decode_photo(source), size, rng)
    except Exception as exc:
        return f"{description} ({type(exc).__name__})"


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> ``(3, H, W)`` float32 in [0, 1]."""
    array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)


def tensor_to_pil(image: torch.Tensor) -> Image.Image:
    """``(3, H, W)`` float on the [0, 1] scale (clamped here) -> RGB PIL image."""
    # In bands of rows: converting an 8K image in one go would hold several float copies of it.
    height = image.shape[-2]
    array = np.empty((height, image.shape[-1], 3), dtype=np.uint8)
    for top in range(0, height, 256):
        band = image[:, top : top + 256].detach().float().cpu().clamp(0, 1).mul(255.0).round().byte()
        array[top : top + 256] = band.permute(1, 2, 0).numpy()
    return Image.fromarray(array)


def load_image(path: str | Path) -> torch.Tensor:
    """Image file -> ``(3, H, W)`` float32 in [0, 1]."""
    return pil_to_tensor(open_rgb(path))


def save_image(image: torch.Tensor | Image.Image, path: str | Path, quality: int = 95) -> Path:
    """Write a ``(3, H, W)`` [0, 1] tensor or a PIL image; the format follows the extension."""
    pil = tensor_to_pil(image) if isinstance(image, torch.Tensor) else image
    suffix = Path(path).suffix.lower()
    if suffix not in IMAGE_EXTENSIONS:
        raise FastStyleError(
            f"cannot write {path}: unsupported extension {suffix!r}; use one of {', '.join(sorted(IMAGE_EXTENSIONS))}"
        )
    options = {"quality": quality} if suffix in (".jpg", ".jpeg", ".webp") else {}
    fmt = Image.registered_extensions()[suffix]
    return atomic_write(path, lambda tmp: pil.save(tmp, format=fmt, **options))


def list_images(folder: str | Path) -> list[Path]:
    """Image files under ``folder`` (recursive, sorted, hidden files skipped)."""
    folder = Path(folder)
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
