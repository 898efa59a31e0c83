"""Reading and writing images: PIL on disk, ``(3, H, W)`` float tensors in [0, 1] in memory."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from fast_style.errors import FastStyleError

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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write, durable: bool = False, temp_suffix: str | None = None) -> Path:
    """Call ``write(tmp_path)`` then rename onto ``path``: readers never see a half-written file.

    The temporary file sits next to ``path`` (same file system, so the rename is atomic) and is
    removed if ``write`` raises. ``durable=True`` also fsyncs the file before the rename and the
    folder after it, so the new file survives a power cut (checkpoints).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=temp_suffix or path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        if durable:
            _fsync(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
        if durable:
            _fsync(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _fsync(path: str | Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. folders on Windows cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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
