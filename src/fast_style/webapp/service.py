"""What the web app does, without Gradio: the models, loaded once and shared, and one stylize call.

``StyleService`` opens every configured model file at start-up and names it after the style it
carries; requests pick a model by that name only. ``open_photo`` refuses oversized uploads before
decoding them (bytes first, then the pixel count from the file's header). ``stylize`` applies the
same steps as ``stylize.py`` (``stylize_batch``: stroke scale, tiling above 4 MP, strength, colour
preservation), so the page, the API and the command line give the same pixels.

Each model runs one image at a time (a lock per model): tiled stylizing patches the network's
instance norms while it runs. Requests decode, resize and encode in parallel.
"""

from __future__ import annotations

import io
import json
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from fast_style.checkpoint_format import read_checkpoint
from fast_style.errors import FastStyleError
from fast_style.images import decode_rgb, pil_to_tensor, tensor_to_pil
from fast_style.infer.backends import Backend, load_backend
from fast_style.infer.stylize import Options, stylize_batch
from fast_style.infer.stylizer import resolve_device

OUTPUT_SIZES = ("original", "512", "1024", "2048")  # longer side of the result, in pixels
WEBCAM_SIZES = (256, 384, 512, 768)  # longer side of stylized webcam frames
STROKE_SCALE = (0.25, 4.0)


@dataclass
class Model:
    name: str
    path: Path
    backend: Backend
    lock: threading.Lock


def style_of(path: Path, backend: Backend) -> str | None:
    """The style name a model file describes itself with, if it says."""
    try:
        if backend.kind == "checkpoint":
            return read_checkpoint(path)["fast_style"].get("style")
        if backend.kind in ("torchscript", "openvino"):
            return backend.info.get("style")
        if backend.kind == "onnx":
            meta = backend.session.get_modelmeta().custom_metadata_map
            return json.loads(meta.get("fast_style", "{}")).get("style")
        if backend.kind == "safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:
                meta = handle.metadata() or {}
            if "fast_style" in meta:
                return json.loads(meta["fast_style"]).get("style")
            sidecar = path.with_suffix(".json")
            return json.loads(sidecar.read_text()).get("style") if sidecar.is_file() else None
    except Exception:  # a name is a nicety: the file itself loaded fine
        return None
    return None


def unique_names(entries: list[tuple[Path, str | None]]) -> list[str]:
    """Names for the style picker: the style, plus the run folder or else the file name where
    several files carry the same style."""
    base = [style or path.name.split(".")[0] for path, style in entries]
    names = []
    for (path, _), name in zip(entries, base, strict=True):
        group = [other for (other, _), b in zip(entries, base, strict=True) if b == name]
        if len(group) == 1:
            names.append(name)
        elif [p.parent.name for p in group].count(path.parent.name) == 1:
            names.append(f"{name} · {path.parent.name}")
        elif [p.name for p in group].count(path.name) == 1:
            names.append(f"{name} · {path.name}")
        else:
            names.append(f"{name} · {path.parent.name}/{path.name}")
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return unique


def fit_longer_side(image: Image.Image, side: int) -> Image.Image:
    """Resize so that the longer side is ``side`` pixels (aspect ratio kept)."""
    width, height = image.size
    factor = side / max(width, height)
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return image if size == image.size else image.resize(size, Image.Resampling.LANCZOS)


class StyleService:
    """Every configured model, loaded once; thread-safe ``stylize``."""

    def __init__(
        self,
        paths: list[Path] | tuple[Path, ...],
        device: str = "auto",
        precision: str = "32",
        max_pixels: int = 16_000_000,
        max_upload_bytes: int = 25 * 1024 * 1024,
    ) -> None:
        self.device = resolve_device(device)
        self.max_pixels, self.max_upload_bytes = int(max_pixels), int(max_upload_bytes)
        loaded = []
        for path in paths:
            backend = load_backend(path, self.device, precision)
            loaded.append((Path(path), style_of(Path(path), backend), backend))
        names = unique_names([(path, style) for path, style, _ in loaded])
        self.models = {
            name: Model(name, path, backend, threading.Lock())
            for name, (path, _, backend) in zip(names, loaded, strict=True)
        }
        if not self.models:
            raise FastStyleError("no models to offer: pass ckpt=[model files]")

    @property
    def names(self) -> list[str]:
        return list(self.models)

    # -- input ---------------------------------------------------------------------------------
    def check_upload_size(self, size: int) -> None:
        if size > self.max_upload_bytes:
            raise FastStyleError(
                f"the upload is {size / 2**20:.1f} MB, above this server's limit of "
                f"{self.max_upload_bytes / 2**20:g} MB: send a smaller file"
            )
        if size == 0:
            raise FastStyleError("the upload is empty: choose a photo (JPEG, PNG, WebP, ...)")

    def open_photo(self, data: bytes) -> Image.Image:
        """Encoded image bytes -> RGB image (EXIF orientation applied, any mode converted), or a
        ``FastStyleError`` saying why not. Size limits are checked before any pixel is decoded."""
        self.check_upload_size(len(data))
        try:
            image = Image.open(io.BytesIO(data))  # reads the header only
        except Image.DecompressionBombError:
            raise FastStyleError(
                f"the photo has too many pixels: this server takes up to {self.max_pixels / 1e6:g} MP"
            ) from None
        except Exception as exc:
            raise FastStyleError(
                f"the upload is not an image this server can read ({type(exc).__name__}): "
                "send a JPEG, PNG, WebP, BMP, TIFF or GIF photo"
            ) from None
        width, height = image.size
        if width * height > self.max_pixels:
            raise FastStyleError(
                f"the photo is {width}×{height} ({width * height / 1e6:.1f} MP), above this server's limit of "
                f"{self.max_pixels / 1e6:g} MP: send a smaller photo"
            )
        try:
            image.load()
            return decode_rgb(image)
        except Exception as exc:
            detail = str(exc).splitlines()[0][:120] if str(exc) else ""
            raise FastStyleError(
                f"cannot decode the photo ({type(exc).__name__}{': ' + detail if detail else ''}): "
                "the file is damaged or truncated; send another"
            ) from None

    # -- stylizing -----------------------------------------------------------------------------
    def model(self, name: object) -> Model:
        if not isinstance(name, str) or name not in self.models:
            raise FastStyleError(f"unknown style: choose one of {', '.join(self.models)} (styles are chosen by name)")
        return self.models[name]

    def stylize(
        self,
        photo: Image.Image | np.ndarray,
        style: object,
        strength: object = 1.0,
        preserve_color: object = False,
        stroke_scale: object = 1.0,
        longer_side: int | None = None,
    ) -> tuple[Image.Image, float]:
        """Stylize one RGB photo; returns (result, seconds the network took)."""
        model = self.model(style)
        strength = _number("strength", strength, 0.0, 1.0)
        scale = _number("stroke scale", stroke_scale, *STROKE_SCALE)
        if not isinstance(preserve_color, bool):
            raise FastStyleError("preserve colours must be true or false")
        if isinstance(photo, np.ndarray):
            if photo.ndim != 3 or photo.shape[2] != 3 or photo.dtype != np.uint8:
                raise FastStyleError("a frame must be an RGB image")
            photo = Image.fromarray(photo)
        width, height = photo.size
        if longer_side is not None:
            factor = longer_side / max(width, height)
            width, height = max(1, round(width * factor)), max(1, round(height * factor))
        work = width * height * max(1.0, scale * scale)
        if work > self.max_pixels:
            raise FastStyleError(
                f"a {width}×{height} result at stroke scale {scale:g} is {work / 1e6:.1f} MP of work, above this "
                f"server's limit of {self.max_pixels / 1e6:g} MP: lower the output size or the stroke scale"
            )
        if longer_side is not None:
            photo = fit_longer_side(photo, longer_side)
        images = pil_to_tensor(photo)[None]
        options = Options(tile="auto", strength=strength, preserve_color=preserve_color, scale=scale, batch_size=1)
        with model.lock:
            start = time.perf_counter()
            result = stylize_batch(model.backend, images, options)
            seconds = time.perf_counter() - start
        return tensor_to_pil(result[0]), seconds


def _number(label: str, value: object, low: float, high: float) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number) or not low <= number <= high:
        raise FastStyleError(f"{label} must be a number from {low:g} to {high:g}")
    return number
