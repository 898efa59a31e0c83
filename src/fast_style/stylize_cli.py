"""``stylize(cfg)``: everything ``python stylize.py`` does."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig
from tqdm import tqdm

from fast_style.errors import FastStyleError
from fast_style.images import IMAGE_EXTENSIONS, list_images, load_image, save_image
from fast_style.inference import load_stylizer, resolve_device, stylize_tensor


def plan_outputs(source: Path, target: Path) -> list[tuple[Path, Path]]:
    """Pairs of (input file, output file); a folder maps to a folder with the same file names."""
    if source.is_dir():
        files = list_images(source)
        if not files:
            raise FastStyleError(f"input folder {source} holds no images: add .jpg/.png files or fix input=")
        if target.exists() and not target.is_dir():
            raise FastStyleError(f"input {source} is a folder but output {target} is a file: pass an output folder")
        return [(f, target / f.relative_to(source)) for f in files]
    if not source.exists():
        raise FastStyleError(f"input {source} does not exist: pass an image file or a folder of images")
    if source.suffix.lower() not in IMAGE_EXTENSIONS:
        raise FastStyleError(
            f"input {source} has unsupported extension {source.suffix!r}: use one of {', '.join(sorted(IMAGE_EXTENSIONS))}"
        )
    if target.is_dir():
        target = target / source.name
    return [(source, target)]


def stylize(cfg: DictConfig) -> list[Path]:
    device = resolve_device(str(cfg.device))
    pairs = plan_outputs(Path(cfg.input).expanduser(), Path(cfg.output).expanduser())
    for src, dst in pairs:
        if dst.suffix.lower() not in IMAGE_EXTENSIONS:
            raise FastStyleError(f"output {dst} has unsupported extension {dst.suffix!r}: use .jpg or .png")
        if dst.exists() and dst.resolve() == src.resolve():
            raise FastStyleError(f"output {dst} is the input itself: choose another output path")
    stylizer = load_stylizer(cfg.ckpt).to(device)
    written = []
    for src, dst in tqdm(pairs, disable=len(pairs) == 1, desc="stylizing", unit="img"):
        written.append(save_image(stylize_tensor(stylizer, load_image(src), device), dst))
    if len(written) == 1:
        print(f"wrote {written[0]}")
    else:
        print(f"wrote {len(written)} images to {Path(cfg.output)}")
    return written
