"""An animated side-by-side of a moving photo, stylized by several models, frame by frame:
``python scripts/flicker_strip.py ckpt=[runs/off,runs/on] labels=[without,with] photo=cat.png out=strip.gif``.

The photo moves as in the flicker figure of ``scripts/evaluate.py`` (sub-pixel pan, slow zoom,
small rotation, sensor noise; ``fast_style/flicker.py``); each frame is stylized on its own, as
``stylize.py`` does a video. The first column is the moving photo. Prints the output path.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING

from fast_style.config.cli import launch
from fast_style.config.schema import at_least, existing, setting


@dataclass
class FlickerStripConfig:
    """``python scripts/flicker_strip.py ckpt=[...] photo=...``: the animated comparison."""

    ckpt: list[str] = field(default_factory=list)  # model files or run folders, one column each
    labels: list[str] = field(default_factory=list)  # column labels (default: the run folder names)
    photo: str = existing(MISSING, "file", "pass photo=<a photo>")
    size: int = setting(192, **at_least(32))  # longer side of the photo before the clip's margin
    frames: int = setting(16, **at_least(2))
    fps: float = setting(8.0, "> 0", lambda v: v > 0)
    out: str = "flicker_strip.gif"  # .gif, or .png for an APNG


def main(cfg) -> None:
    from fast_style.errors import FastStyleError
    from fast_style.evaluation import find_models, load_photo
    from fast_style.flicker import comparison_animation, save_animation
    from fast_style.infer.backends import load_backend

    models = find_models([str(m) for m in cfg.ckpt])
    if not models:
        raise FastStyleError("no model to show: pass ckpt=[<model file or run folder>, ...]")
    labels = list(cfg.labels) or [m.parent.name if m.stem in ("final", "last") else m.stem for m in models]
    if len(labels) != len(models):
        raise FastStyleError(f"{len(labels)} labels for {len(models)} models: pass one label per model")
    photo = load_photo(cfg.photo, cfg.size)
    columns = [("photo", None)] + [(label, load_backend(m)) for label, m in zip(labels, models, strict=True)]
    print(save_animation(comparison_animation(columns, photo, cfg.frames), cfg.out, cfg.fps))


if __name__ == "__main__":
    launch("flicker_strip", main, config_schema=FlickerStripConfig)
