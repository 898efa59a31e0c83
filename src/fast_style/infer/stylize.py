"""``stylize(cfg)``: everything ``python stylize.py`` does (see the README's data flow).

Any model file (``.ckpt``, ``.onnx``, TorchScript ``.pt``/``.ts``, ``.safetensors``, OpenVINO ``.xml``;
``backend=openvino`` runs any of them on OpenVINO), any input (an
image, a folder of images, a video), any size: large images go through ``tiling``. Images are
``(3, H, W)`` float in [0, 1] throughout; the output always has the input's size.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from tqdm import tqdm

from fast_style.config.schema import tile_setting
from fast_style.errors import FastStyleError
from fast_style.images import IMAGE_EXTENSIONS, list_images, load_image, save_image
from fast_style.infer.backends import Backend, load_backend
from fast_style.infer.color import blend_into
from fast_style.infer.stylizer import resolve_device, style_mixes
from fast_style.infer.temporal import TemporalBlend
from fast_style.infer.tiling import AUTO_TILE, AUTO_TILE_PIXELS, stylize_tiled
from fast_style.infer.video import VIDEO_EXTENSIONS, stylize_video


@dataclass(frozen=True)
class Options:
    """What to do to every image (a validated ``configs/stylize.yaml``: see ``StylizeConfig``)."""

    tile: str | int | None = "auto"  # "auto", None (off) or a tile size in pixels
    strength: float = 1.0
    preserve_color: bool = False
    scale: float = 1.0
    batch_size: int = 4

    @classmethod
    def from_config(cls, cfg: DictConfig) -> Options:
        return cls(tile_setting(cfg.tile), cfg.strength, cfg.preserve_color, cfg.scale, cfg.batch_size)

    def tile_for(self, height: int, width: int) -> int | None:
        """Tile size for an image of this size, or None to run it whole."""
        if self.tile is None:
            return None
        if self.tile == "auto":
            return AUTO_TILE if height * width > AUTO_TILE_PIXELS else None
        return int(self.tile) if max(height, width) > int(self.tile) else None


def resize(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(B, 3, h, w)`` -> ``(B, 3, *size)``, antialiased when shrinking, clamped to [0, 1]."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    return F.interpolate(images, size=size, mode="bicubic", antialias=True, align_corners=False).clamp_(0, 1)


@torch.inference_mode()
def stylize_batch(backend: Backend, images: torch.Tensor, options: Options) -> torch.Tensor:
    """``(B, 3, H, W)`` photos in [0, 1] -> ``(B, 3, H, W)`` final images in [0, 1]."""
    height, width = images.shape[-2:]
    work = images
    if options.scale != 1.0:
        work = resize(images, (max(1, round(height * options.scale)), max(1, round(width * options.scale))))
    tile = options.tile_for(*work.shape[-2:])
    if tile is None:
        styled = backend(work)
    else:
        stylizer = backend.eager()  # tiling freezes the instance norms of the PyTorch network
        parts = [stylize_tiled(backend.run_eager, stylizer, image, tile) for image in work]  # one at a time
        styled = parts[0][None] if len(parts) == 1 else torch.stack(parts)  # a view: no 8K copy
    styled = resize(styled, (height, width))
    return blend_into(styled, images, options.strength, options.preserve_color)


def plan_outputs(source: Path, target: Path, overwrite: bool = False) -> list[tuple[Path, Path]]:
    """Pairs of (input file, output file); a folder maps to a folder with the same file names.

    Refuses to write over an input unless ``overwrite``; an output folder inside the input folder
    is not read back as input.
    """
    if source.is_dir():
        if target.exists() and not target.is_dir():
            raise FastStyleError(f"input {source} is a folder but output {target} is a file: pass an output folder")
        if target.resolve() == source.resolve() and not overwrite:
            raise FastStyleError(
                f"output folder {target} is the input folder: its photos would be overwritten; choose another "
                "output or pass overwrite=true"
            )
        inside = target.resolve().is_relative_to(source.resolve()) and target.resolve() != source.resolve()
        files = [f for f in list_images(source) if not (inside and f.resolve().is_relative_to(target.resolve()))]
        if not files:
            raise FastStyleError(f"input folder {source} holds no images: add .jpg/.png files or fix input=")
        return [(f, target / f.relative_to(source)) for f in files]
    if not source.exists():
        raise FastStyleError(f"input {source} does not exist: pass an image file, a folder of images or a video")
    suffix = source.suffix.lower()
    if suffix not in IMAGE_EXTENSIONS | VIDEO_EXTENSIONS:
        raise FastStyleError(
            f"input {source} has unsupported extension {source.suffix!r}: use an image "
            f"({', '.join(sorted(IMAGE_EXTENSIONS))}) or a video ({', '.join(sorted(VIDEO_EXTENSIONS))})"
        )
    if target.is_dir() or (not target.exists() and not target.suffix):
        target = target / source.name
    allowed = VIDEO_EXTENSIONS if suffix in VIDEO_EXTENSIONS else IMAGE_EXTENSIONS
    if target.suffix.lower() not in allowed:
        raise FastStyleError(
            f"output {target} has unsupported extension {target.suffix!r}: use one of {', '.join(sorted(allowed))}"
        )
    if target.exists() and target.resolve() == source.resolve() and not overwrite:
        raise FastStyleError(f"output {target} is the input itself: choose another output path or pass overwrite=true")
    return [(source, target)]


def _report(message: str) -> None:
    tqdm.write(f"skipped {' '.join(message.split())}", file=sys.stderr)


def stylize_folder(
    backend: Backend, pairs: list[tuple[Path, Path]], options: Options, keep_going: bool = True
) -> tuple[list[Path], int]:
    """Stylize many images, batching neighbours of equal size; a failing file is reported and
    skipped (``keep_going``) or raised. Returns (written outputs, number of failures)."""
    written: list[Path] = []
    failures = 0
    pending: list[tuple[Path, Path, torch.Tensor]] = []

    def run(group: list[tuple[Path, Path, torch.Tensor]]) -> None:
        nonlocal failures
        try:
            images = group[0][2][None] if len(group) == 1 else torch.stack([image for _, _, image in group])
            results = stylize_batch(backend, images, options)
            for (_, dst, _), result in zip(group, results, strict=True):
                written.append(save_image(result, dst))
        except (FastStyleError, RuntimeError, OSError, ValueError, MemoryError) as exc:
            if len(group) > 1:  # find which file it was
                for item in group:
                    run([item])
                return
            if not keep_going:
                raise
            failures += 1
            _report(f"{group[0][0]}: {exc}")

    for src, dst in tqdm(pairs, disable=len(pairs) == 1, desc="stylizing", unit="img"):
        try:
            image = load_image(src)
        except FastStyleError as exc:
            if not keep_going:
                raise
            failures += 1
            _report(f"{src}: {exc}")
            continue
        small = options.tile_for(*image.shape[-2:]) is None
        if pending and (pending[0][2].shape != image.shape or len(pending) >= options.batch_size or not small):
            run(pending)
            pending = []
        if small:
            pending.append((src, dst, image))
        else:
            run([(src, dst, image)])
    if pending:
        run(pending)
    return written, failures


def stylize(cfg: DictConfig) -> list[Path]:
    """Everything ``python stylize.py`` does, from a validated ``configs/stylize.yaml``."""
    options = Options.from_config(cfg)
    openvino = cfg.backend == "openvino" or str(cfg.ckpt).lower().endswith(".xml")
    device = cfg.device if openvino else resolve_device(cfg.device)  # OpenVINO names its own devices
    source, target = Path(cfg.input).expanduser(), Path(cfg.output).expanduser()
    pairs = plan_outputs(source, target, cfg.overwrite)
    backend = load_backend(
        cfg.ckpt, device, cfg.precision, compile=cfg.compile, fast_kernels=cfg.fast_kernels, backend=cfg.backend
    )
    video_blend = cfg.get("video_blend", 0.0)
    mixes = choose_styles(backend, cfg.get("style"))
    if len(mixes) > 1:  # style=all: one output per style, named after it
        written = []
        for label, mix in mixes:
            backend.select_style(mix)
            written += _stylize_pairs(
                backend, source, target, [(src, styled_path(dst, label)) for src, dst in pairs], options, video_blend
            )
        return written
    if mixes:
        backend.select_style(mixes[0][1])
    return _stylize_pairs(backend, source, target, pairs, options, video_blend)


def choose_styles(backend: Backend, spec) -> list[tuple[str, torch.Tensor]]:
    """``style=`` for this model: ``[(label, weights (S,))]`` (one entry, or one per style for
    ``all``); ``[]`` for a single-style model, whose own style name is the only one accepted."""
    if backend.styles:
        return style_mixes(spec, backend.styles)
    own = backend.info.get("style")
    if spec is not None and str(spec) != str(own):
        raise FastStyleError(f"{backend.path.name} holds one style ({own}): drop style= or pass a multi-style model")
    return []


def styled_path(path: Path, label: str) -> Path:
    """``out/a.jpg`` -> ``out/a_<label>.jpg`` (style=all writes one file per style)."""
    return path.with_name(f"{path.stem}_{label}{path.suffix}")


def _stylize_pairs(
    backend: Backend,
    source: Path,
    target: Path,
    pairs: list[tuple[Path, Path]],
    options: Options,
    video_blend: float = 0.0,
) -> list[Path]:
    """Stylize ``pairs`` (source file -> output file) with the style ``backend`` has selected;
    a video ``source`` is blended frame to frame with strength ``video_blend`` (0: off)."""
    if source.is_file() and source.suffix.lower() in VIDEO_EXTENSIONS:
        dst = pairs[0][1]
        blend = TemporalBlend(video_blend)  # strength 0: the frames as stylized

        def process(batch: torch.Tensor) -> torch.Tensor:
            return blend(batch, stylize_batch(backend, batch, options))

        frames = stylize_video(source, dst, process, options.batch_size)
        print(f"wrote {dst} ({frames} frames)")
        return [dst]
    written, failures = stylize_folder(backend, pairs, options, keep_going=source.is_dir())
    if failures:
        raise FastStyleError(
            f"{failures} of {len(pairs)} images failed (reported above), {len(written)} written to {target}: "
            "fix or remove those files"
        )
    print(
        f"wrote {written[0]}" if len(pairs) == 1 and not source.is_dir() else f"wrote {len(written)} images to {target}"
    )
    return written
