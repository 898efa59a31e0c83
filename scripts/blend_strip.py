"""One photo, a multi-style model, the blend between two of its styles in equal steps:
``python scripts/blend_strip.py ckpt=multi.ckpt "styles=[starry_night,wave]" photo=cat.png out=strip.jpg``.

The first cell is the photo; then ``steps`` cells with the second style's weight going from 0 to 1
(``steps=5``: 0, 0.25, 0.5, 0.75, 1), each labelled with its blend. Blends mix the styles' norm
scales and shifts, exactly as ``stylize.py style=a:0.75,b:0.25`` does. Prints the output path.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING

from fast_style.config.cli import launch
from fast_style.config.schema import at_least, existing, setting


@dataclass
class BlendStripConfig:
    """``python scripts/blend_strip.py ckpt=... styles=[a,b] photo=...``: the interpolation strip."""

    ckpt: str = existing(MISSING, "file", "pass ckpt=<a multi-style model file>")
    styles: list[str] = field(default_factory=list)  # the two styles to blend, from the first to the second
    photo: str = existing(MISSING, "file", "pass photo=<a photo>")
    size: int = setting(256, **at_least(16))  # longer side of the photo, pixels
    steps: int = setting(5, **at_least(2))  # cells from the first style to the second, ends included
    out: str = "blend_strip.jpg"


def labelled_row(cells, labels: list[str], label_height: int = 16):
    """``cells`` ``(3, H, W)`` tensors in [0, 1], all the same size, side by side with ``labels``
    written above them: a PIL image ``(len(cells) * W, H + label_height)``."""
    from PIL import Image, ImageDraw

    from fast_style.images import tensor_to_pil

    _, height, width = cells[0].shape
    row = Image.new("RGB", (width * len(cells), height + label_height), "white")
    draw = ImageDraw.Draw(row)
    for index, (cell, label) in enumerate(zip(cells, labels, strict=True)):
        draw.text((index * width + 3, 2), label, fill="black")
        row.paste(tensor_to_pil(cell), (index * width, label_height))
    return row


def main(cfg) -> None:
    import torch

    from fast_style.errors import FastStyleError
    from fast_style.evaluation import load_photo
    from fast_style.images import save_image
    from fast_style.infer.backends import load_backend
    from fast_style.infer.stylizer import style_mixes

    backend = load_backend(cfg.ckpt)
    backend.full()  # reads the file's style names
    if len(backend.styles) < 2:
        raise FastStyleError(f"{cfg.ckpt} holds one style: pass a multi-style model (train.py styles=[a,b,...])")
    if len(cfg.styles) != 2:
        raise FastStyleError(
            f"styles= needs two of the model's styles ({', '.join(backend.styles)}), got {list(cfg.styles)}"
        )
    first, second = (str(s) for s in cfg.styles)
    photo = load_photo(cfg.photo, cfg.size)
    cells, labels = [photo], ["photo"]
    for step in range(cfg.steps):
        share = step / (cfg.steps - 1)
        ((_, weights),) = style_mixes([f"{first}:{1 - share}", f"{second}:{share}"], backend.styles)
        backend.select_style(weights)
        with torch.inference_mode():
            cells.append(backend(photo[None])[0].float().clamp(0, 1))
        labels.append(
            first if share == 0 else second if share == 1 else f"{first} {1 - share:.2f} / {second} {share:.2f}"
        )
    print(save_image(labelled_row(cells, labels), cfg.out))


if __name__ == "__main__":
    launch("blend_strip", main, config_schema=BlendStripConfig)
