"""Contact sheet of a sweep: one row per run, one column per content photo, rows labelled with
the overrides that differ between the runs. A multi-style model gives one row per style (the
gallery row of a multi-style net), labelled ``style=<name>``.

Layout (all sizes in pixels)::

    +---------+--------+--------+--
    | content | photo1 | photo2 | ...     <- the unstylized photos
    +---------+--------+--------+--
    | label 0 | run 0 applied to each photo
    | label 1 | run 1 ...
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from PIL import Image, ImageDraw, ImageFont

from fast_style.checkpoint_format import CHECKPOINT_KEY, read_checkpoint
from fast_style.errors import FastStyleError
from fast_style.evaluation import find_checkpoints, trained_paintings
from fast_style.images import open_rgb, resize_crop, save_image, tensor_to_pil
from fast_style.infer.stylizer import Stylizer, network_from_checkpoint

BACKGROUND = (255, 255, 255)
TEXT = (20, 20, 20)


@dataclass
class Run:
    """One trained network: its checkpoint, run directory and what it was trained with."""

    checkpoint: Path
    run_dir: Path
    config: dict[str, Any]
    overrides: list[str] | None = None  # Hydra's <run_dir>/.hydra/overrides.yaml, when present
    style: str | None = None  # the style this row shows, for a multi-style model


@dataclass
class ContactSheet:
    image: Image.Image
    labels: list[list[str]]  # per run: the lines written left of its row
    rows: int  # runs + 1 (the content row)
    cols: int  # photos
    cells: list[list[tuple[int, int, int, int]]] = field(default_factory=list)  # [row][col] -> (l, t, r, b)


def load_run(checkpoint: Path) -> tuple[Run, Stylizer]:
    """A single-style checkpoint's run and stylizer (see ``load_runs`` for multi-style ones)."""
    return load_runs(checkpoint)[0]


def load_runs(checkpoint: Path) -> list[tuple[Run, Stylizer]]:
    """One ``(run, stylizer)`` per row: one for a single-style checkpoint, one per style (each
    baked into a plain net, judged against its own painting) for a multi-style checkpoint."""
    data = read_checkpoint(checkpoint)
    run_dir = checkpoint.parent
    overrides_file = run_dir / ".hydra" / "overrides.yaml"
    overrides = None
    if overrides_file.is_file():
        overrides = [str(o) for o in (yaml.safe_load(overrides_file.read_text()) or [])]
    config = dict(data[CHECKPOINT_KEY].get("config") or {})
    net = network_from_checkpoint(data)
    styles = list(data[CHECKPOINT_KEY].get("styles") or [])
    if not styles:
        return [(Run(checkpoint, run_dir, config, overrides), Stylizer(net).eval())]
    # Each row is judged by its own painting, as scripts/evaluate.py does.
    trained = trained_paintings(config)
    one_hot = torch.eye(len(styles))
    return [
        (
            Run(checkpoint, run_dir, {**config, "style": trained.get(name, {"name": name})}, overrides, name),
            Stylizer(net.baked(one_hot[index])).eval(),
        )
        for index, name in enumerate(styles)
    ]


def _flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(config, dict):
        out: dict[str, Any] = {}
        for key, value in config.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: config}


def _override_key(text: str) -> str:
    return text.split("=", 1)[0].lstrip("+~")


def run_labels(runs: list[Run]) -> list[list[str]]:
    """Per run, the ``key=value`` lines that tell it apart from the others.

    From Hydra's overrides when every run has them (``loss.style_weight=0.3``, ``style=the_scream``),
    else from the resolved configs saved in the checkpoints (paths that name the run itself left
    out). A run that differs in nothing is labelled with its folder name.
    """
    if all(run.overrides is not None for run in runs):
        per_run = [{_override_key(o): o for o in run.overrides} for run in runs]
        keys = list(dict.fromkeys(k for items in per_run for k in items))
        differing = [k for k in keys if len({items.get(k) for items in per_run}) > 1]
        labels = [[items[k] for k in differing if k in items] for items in per_run]
    else:
        per_run = []
        for run in runs:
            # A multi-style row's style is its own first line (below), not a config difference.
            flat = _flatten({k: v for k, v in run.config.items() if not (run.style and k == "style")})
            own = str(run.config.get("run_dir") or run.run_dir)
            per_run.append({k: v for k, v in flat.items() if k != "run_dir" and not str(v).startswith(own)})
        keys = list(dict.fromkeys(k for items in per_run for k in items))
        differing = [k for k in keys if len({repr(items.get(k)) for items in per_run}) > 1]
        labels = [[f"{k}={items[k]}" for k in differing if k in items] for items in per_run]
    # Rows of one multi-style model differ only in their style: it goes first.
    labels = [[f"style={run.style}", *lines] if run.style else lines for run, lines in zip(runs, labels, strict=True)]
    return [lines or [run.run_dir.name or run.checkpoint.stem] for run, lines in zip(runs, labels, strict=True)]


def builtin_photos(size: int = 256) -> list[torch.Tensor]:
    """Three generated scenes ``(3, size, size)`` in [0, 1] (no files needed): a landscape with a
    sun, a city at dusk, and shaded spheres on a checkered table; enough edges, flat areas and
    colours to judge a style."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    # landscape: sky gradient, sun, two rolling hills
    sky = np.stack([0.35 + 0.4 * y, 0.55 + 0.35 * y, 0.95 - 0.1 * y])
    image = sky.copy()
    sun = (x - 0.72) ** 2 + (y - 0.25) ** 2 < 0.08**2
    image[:, sun] = np.array([1.0, 0.85, 0.3])[:, None]
    for height, amp, freq, colour in ((0.62, 0.06, 5.0, (0.3, 0.55, 0.25)), (0.75, 0.05, 9.0, (0.15, 0.4, 0.15))):
        hill = y > height + amp * np.sin(freq * x * np.pi)
        image[:, hill] = np.array(colour)[:, None] * (0.8 + 0.4 * y[hill])
    landscape = image
    # city at dusk: orange-purple sky, dark buildings with lit windows
    image = np.stack([0.9 - 0.5 * y, 0.45 - 0.25 * y, 0.35 + 0.25 * y])
    rng = np.random.default_rng(0)
    left = 0.0
    while left < 1.0:
        width, top = rng.uniform(0.08, 0.18), rng.uniform(0.25, 0.7)
        block = (x >= left) & (x < left + width) & (y > top)
        image[:, block] = np.array([0.12, 0.12, 0.18])[:, None]
        windows = block & (np.sin(x * size * 0.8) > 0.3) & (np.sin(y * size * 0.6) > 0.2)
        lit = windows & (rng.random(windows.shape) < 0.6)
        image[:, lit] = np.array([1.0, 0.9, 0.5])[:, None]
        left += width + rng.uniform(0.0, 0.03)
    city = image
    # still life: checkered table, three shaded spheres
    checks = ((np.floor(x * 8) + np.floor(y * 8)) % 2).astype(np.float32)
    image = np.stack([0.55 + 0.3 * checks, 0.35 + 0.25 * checks, 0.25 + 0.2 * checks])
    for cx, cy, r, colour in (
        (0.3, 0.45, 0.18, (0.85, 0.15, 0.1)),
        (0.65, 0.55, 0.22, (0.2, 0.4, 0.85)),
        (0.5, 0.25, 0.12, (0.95, 0.8, 0.2)),
    ):
        d2 = ((x - cx) ** 2 + (y - cy) ** 2) / r**2
        inside = d2 < 1
        shade = np.clip(1.1 - 0.8 * (((x - cx + 0.3 * r) ** 2 + (y - cy + 0.3 * r) ** 2) / r**2), 0.2, 1.2)
        image[:, inside] = np.array(colour)[:, None] * shade[inside]
    still = image
    return [torch.from_numpy(np.clip(a, 0, 1).astype(np.float32)) for a in (landscape, city, still)]


def load_photos(paths: list[str | Path], size: int) -> list[torch.Tensor]:
    """Centre square crops ``(3, size, size)`` in [0, 1] of the given photo files."""
    return [resize_crop(open_rgb(p), size, None).float().div(255.0) for p in paths]


def figure_lines(figures: dict[str, Any]) -> list[str]:
    """The quality figures printed under a row's label (higher style gain and structure are better)."""
    return [
        f"style gain {figures['style_gain']:.2f}",
        f"structure {figures['structure']:.2f}",
        f"artifacts {figures['artifact_share']:.3f}",
    ]


def run_figures(runs: list[Run], stylizers: list[Stylizer], photos: list[torch.Tensor]) -> list[dict[str, Any]]:
    """Per run, the mean ``scripts/evaluate.py`` figures on ``photos``, measured with its own VGG and painting."""
    from fast_style.evaluation import judge_for, measure_images

    judges: dict = {}
    return [measure_images(judge_for(r.config, cache=judges), s, photos) for r, s in zip(runs, stylizers, strict=True)]


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # Pillow < 10.1 or no FreeType: the fixed bitmap font
        return ImageFont.load_default()


@torch.inference_mode()
def make_contact_sheet(
    runs: list[Run],
    stylizers: list[Stylizer],
    photos: list[torch.Tensor],
    pad: int = 8,
    font_size: int | None = None,
    figures: list[dict[str, Any]] | None = None,
    labels: list[str] | None = None,
) -> ContactSheet:
    """Stylize every photo with every run and lay the results out as a labelled grid.

    Args:
        photos: equal-size ``(3, S, S)`` tensors in [0, 1]; each cell is ``S x S``.
        figures: per run, ``scripts/evaluate.py`` figures (means over the photos) printed under its label.
        labels: per run, the label to write instead of the overrides that differ (one line each).
    """
    if not photos:
        raise FastStyleError("no content photos: pass photos=[a.jpg,b.jpg] or leave it out for the built-in ones")
    tile = photos[0].shape[-1]
    batch = torch.stack(photos)
    if labels is not None and len(labels) != len(runs):
        raise FastStyleError(f"{len(labels)} labels for {len(runs)} runs: pass one label per run, or none")
    label_lines = [[label] for label in labels] if labels is not None else run_labels(runs)
    if figures is not None:
        label_lines = [lines + figure_lines(f) for lines, f in zip(label_lines, figures, strict=True)]
    font = _font(font_size or max(12, tile // 16))
    line_height = font.getbbox("Ag=0.")[3] + 4
    rows_of_text = [["content"], *label_lines]
    label_width = 2 * pad + max(int(font.getlength(line)) for lines in rows_of_text for line in lines)
    row_heights = [max(tile, len(lines) * line_height) for lines in rows_of_text]
    width = label_width + len(photos) * (tile + pad)  # label_width ends with a pad: a pad between all cells
    height = sum(row_heights) + (len(row_heights) + 1) * pad
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    cells: list[list[tuple[int, int, int, int]]] = []
    top = pad
    for row, (lines, row_height) in enumerate(zip(rows_of_text, row_heights, strict=True)):
        images = batch if row == 0 else stylizers[row - 1](batch)
        text_top = top + (row_height - len(lines) * line_height) // 2
        for i, line in enumerate(lines):
            draw.text((pad, text_top + i * line_height), line, fill=TEXT, font=font)
        cells.append([])
        for col, image in enumerate(images):
            left = label_width + col * (tile + pad)
            cell_top = top + (row_height - tile) // 2
            sheet.paste(tensor_to_pil(image), (left, cell_top))
            cells[-1].append((left, cell_top, left + tile, cell_top + tile))
        top += row_height + pad
    return ContactSheet(sheet, label_lines, rows=len(rows_of_text), cols=len(photos), cells=cells)


def main(cfg) -> Path:
    """``scripts/contact_sheet.py``: ``cfg`` is a validated ``configs/contact_sheet.yaml``
    (``runs``: multirun folders, run folders or .ckpt files; ``photos``; ``size``; ``out``; ``metrics``;
    ``labels``)."""
    checkpoints = find_checkpoints(list(cfg.runs))
    photos = load_photos(list(cfg.photos), cfg.size) if cfg.photos else builtin_photos(cfg.size)
    loaded = [row for c in checkpoints for row in load_runs(c)]
    runs, stylizers = [r for r, _ in loaded], [s for _, s in loaded]
    figures = run_figures(runs, stylizers, photos) if cfg.metrics else None
    labels = [str(label) for label in cfg.labels] if cfg.get("labels") else None
    sheet = make_contact_sheet(runs, stylizers, photos, figures=figures, labels=labels)
    single_dir = len(cfg.runs) == 1 and Path(cfg.runs[0]).is_dir()
    out = Path(cfg.out) if cfg.out else (Path(cfg.runs[0]) if single_dir else Path.cwd()) / "contact_sheet.png"
    save_image(sheet.image, out)
    runs, photos_n = sheet.rows - 1, sheet.cols
    print(f"contact sheet ({runs} run{'s' * (runs != 1)} x {photos_n} photo{'s' * (photos_n != 1)}): {out}")
    return out
