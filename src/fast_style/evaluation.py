"""Quality report for trained stylizers on a set of photos (``scripts/evaluate.py``).

For each model and photo: the ``quality`` figures (style gain per VGG style layer and mean,
content error, structure kept, artifact share, palette distance), the flicker figure of a short
synthetic clip of the photo (``flicker.py``) and the time per megapixel; then the mean over
photos. The photos themselves are measured too ("photo" row): the artifact share of a clean output
should stay near the photo's own, and the clip's own flicker is what its noise and motion alone give.
With ``video=`` the flicker of a real video's first frames is reported too.

Which painting and which VGG: by default those the model was trained with (a ``.ckpt`` carries its
config); ``style=`` (a style config name or an image path) and ``weights=`` override them, and
exports, which only carry the style's name, use ``configs/style/<name>.yaml``.
"""

from __future__ import annotations

import json
import re
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from fast_style import flicker as flicker_figure
from fast_style import quality
from fast_style.checkpoint_format import CHECKPOINT_KEY, read_checkpoint
from fast_style.errors import FastStyleError
from fast_style.files import atomic_write
from fast_style.images import list_images, load_image
from fast_style.infer.backends import load_backend
from fast_style.infer.temporal import TemporalBlend
from fast_style.model.perceptual import VGGFeatures, gram_matrix

DEFAULT_STYLE_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
DEFAULT_CONTENT_LAYER = "relu2_2"
FIGURES = ("style_gain", "content_error", "structure", "artifact_share", "palette_distance", "flicker", "ms_per_mp")
MODEL_SUFFIXES = (".ckpt", ".onnx", ".pt", ".ts", ".safetensors")


@dataclass
class ModelReport:
    name: str
    path: str
    style: str
    photos: dict[str, dict[str, Any]] = field(default_factory=dict)
    video: dict[str, float] | None = None  # flicker of a real video (video_flicker), when one is given

    @property
    def mean(self) -> dict[str, float]:
        return mean_figures(self.photos.values())


def mean_figures(rows) -> dict[str, float]:
    rows = list(rows)
    keys = [k for k in rows[0] if isinstance(rows[0][k], float)] if rows else []
    out = {k: statistics.fmean(r[k] for r in rows) for k in keys}
    layers = rows[0].get("style_gain_layers", {}) if rows else {}
    if layers:
        out["style_gain_layers"] = {n: statistics.fmean(r["style_gain_layers"][n] for r in rows) for n in layers}
    return out


def _natural_key(path: Path) -> list:
    """Multirun job folders sort as numbers: 2 before 10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.as_posix())]


def _checkpoint_in(folder: Path) -> Path | None:
    for name in ("final.ckpt", "last.ckpt"):
        if (folder / name).is_file():
            return folder / name
    return None


def find_checkpoints(paths: list[str | Path]) -> list[Path]:
    """Checkpoints to compare: ``.ckpt`` files as given, run folders (``final.ckpt``, else
    ``last.ckpt``), or folders holding run folders (a multirun directory), searched recursively."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            direct = _checkpoint_in(path)
            if direct:
                found.append(direct)
                continue
            run_dirs = sorted({p.parent for p in path.rglob("*.ckpt") if p.name in ("final.ckpt", "last.ckpt")})
            if not run_dirs:
                raise FastStyleError(
                    f"no final.ckpt or last.ckpt under {path}: pass a multirun folder, run folders or .ckpt files"
                )
            found.extend(_checkpoint_in(d) for d in sorted(run_dirs, key=_natural_key))
        else:
            raise FastStyleError(f"{path} does not exist: pass a multirun folder, run folders or .ckpt files")
    if not found:
        raise FastStyleError("nothing to compare: pass a multirun folder, run folders or .ckpt files")
    return found


def find_models(paths: list[str | Path]) -> list[Path]:
    """Model files as given; run folders (final.ckpt, else last.ckpt); multirun folders, recursively."""
    files = [Path(p).expanduser() for p in paths if Path(p).expanduser().suffix.lower() in MODEL_SUFFIXES]
    folders = [p for p in paths if Path(p).expanduser().suffix.lower() not in MODEL_SUFFIXES]
    for path in files:
        if not path.is_file():
            raise FastStyleError(
                f"model file {path} does not exist: pass ckpt=<model file, run folder or multirun folder>"
            )
    return files + (find_checkpoints(folders) if folders else [])


def model_config(path: Path, backend) -> dict[str, Any]:
    """The training config a model carries (a ``.ckpt``), or ``{"style": {"name": ...}}`` for exports."""
    if path.suffix.lower() == ".ckpt":
        section = read_checkpoint(path)[CHECKPOINT_KEY]
        config = dict(section.get("config") or {})
        config.setdefault("style", {"name": section.get("style")})
        return config
    info = getattr(backend, "info", None) or {}
    return {"style": {"name": info.get("style")}}


def style_config(config: dict[str, Any], override: str | None) -> dict[str, Any]:
    """The style section to measure against: the override (config name or image path) or the model's."""
    from fast_style.config import CONFIG_DIR

    if override:
        if Path(override).expanduser().is_file():
            return {"name": Path(override).stem, "image": str(Path(override).expanduser()), "size": 512}
        name = override
    else:
        style = config.get("style") or {}
        if style.get("image") or style.get("url"):
            return dict(style)
        name = style.get("name")
    file = CONFIG_DIR / "style" / f"{name}.yaml"
    if not name or not file.is_file():
        raise FastStyleError(
            f"cannot tell which painting the model was trained on (style {name!r}): pass style=<style name or image path>"
        )
    return OmegaConf.to_container(OmegaConf.load(file).style)


def judge_for(
    config: dict[str, Any], weights: str | None = None, style: str | None = None, cache: dict | None = None
) -> Judge:
    """The ``Judge`` for a model trained with ``config`` (its style and VGG unless overridden)."""
    painting = style_config(config, style)
    perceptual = config.get("perceptual") or {}
    vgg_weights = str(weights or perceptual.get("weights") or "imagenet")
    arch = perceptual.get("arch", "vgg16")
    key = json.dumps([painting, vgg_weights, arch], sort_keys=True, default=str)
    cache = {} if cache is None else cache
    if key not in cache:
        cache[key] = Judge(painting, vgg_weights, arch, DEFAULT_STYLE_LAYERS, DEFAULT_CONTENT_LAYER)
    return cache[key]


def measure_images(judge: Judge, stylize, photos: list[torch.Tensor]) -> dict[str, Any]:
    """Mean figures of ``stylize`` (``(1, 3, H, W)`` -> same, [0, 1]) over ``photos`` ``(3, H, W)``."""
    with torch.no_grad():
        return mean_figures(judge.figures(stylize(p[None])[0].float().cpu(), p.float().cpu()) for p in photos)


class Judge:
    """The VGG features, painting Grams and painting pixels one style is measured with."""

    def __init__(self, style: dict[str, Any], weights: str, arch: str, style_layers, content_layer: str) -> None:
        from fast_style.train.styles import load_style_image

        self.style, self.style_layers, self.content_layer = dict(style), list(style_layers), content_layer
        self.vgg = VGGFeatures(sorted({*self.style_layers, content_layer}), arch, weights)
        self.painting = load_style_image(OmegaConf.create(style))
        with torch.no_grad():
            features = self.vgg(self.painting)
        self.style_grams = {n: gram_matrix(features[n])[0] for n in self.style_layers}

    @torch.no_grad()
    def grams_and_content(self, image: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        features = self.vgg(image[None])
        return {n: gram_matrix(features[n])[0] for n in self.style_layers}, features[self.content_layer]

    def figures(self, output: torch.Tensor, photo: torch.Tensor) -> dict[str, Any]:
        """Every figure of ``output`` ``(3, H, W)``, the stylized ``photo`` (same size), in [0, 1]."""
        photo_grams, photo_content = self.grams_and_content(photo)
        grams, content = self.grams_and_content(output)
        gains = quality.style_gain_per_layer(grams, photo_grams, self.style_grams)
        return {
            "style_gain": statistics.fmean(gains.values()),
            "style_gain_layers": gains,
            "content_error": quality.relative_error(content, photo_content),
            "structure": quality.structure_kept(output, photo),
            "artifact_share": quality.artifact_share(output),
            "palette_distance": quality.palette_distance(output, self.painting),
        }


def load_photo(path: Path, size: int | None) -> torch.Tensor:
    image = load_image(path)
    if size:
        h, w = image.shape[-2:]
        scale = size / max(h, w)
        shape = (max(1, round(h * scale)), max(1, round(w * scale)))
        image = F.interpolate(image[None], size=shape, mode="bicubic", antialias=True)[0].clamp(0, 1)
    return image


def evaluate(
    models: list[str | Path],
    photos: str | Path | list[str | Path],
    weights: str | None = None,
    style: str | None = None,
    size: int | None = None,
    device: str = "cpu",
    repeats: int = 1,
    flicker_frames: int = flicker_figure.CLIP_FRAMES,
    video: str | Path | None = None,
    video_frames: int = flicker_figure.VIDEO_FRAMES,
    video_blend: float = 0.0,
) -> tuple[list[ModelReport], dict[str, dict[str, Any]]]:
    """Measure every model on every photo; returns the model reports and the photos' own figures.

    ``flicker_frames``: frames of each photo's synthetic clip (0: no flicker figure). ``video``: a
    video whose first ``video_frames`` frames (at ``size``) get the real-video flicker figure.
    ``video_blend``: measure the clips as ``stylize.py video_blend=`` renders them.
    """
    paths = find_models(list(models))
    photo_paths = list_images(photos) if not isinstance(photos, list) else [Path(p) for p in photos]
    if not photo_paths:
        raise FastStyleError(f"no photos in {photos}: pass photos=<folder of images>")
    images = {p.name: load_photo(p, size) for p in photo_paths}
    clip = flicker_figure.read_video_frames(video, video_frames, size) if video else None
    judges: dict[str, Judge] = {}
    reports, references = [], {}
    for path in paths:
        backend = load_backend(path, device)
        config = model_config(path, backend)
        name = path.parent.name if path.suffix == ".ckpt" and path.stem in ("final", "last") else path.name
        for label, mix, judge in model_styles(backend, config, weights, style, judges):
            if mix is not None:
                backend.select_style(mix)
            report = ModelReport(f"{name}:{label}" if label else name, str(path), str(judge.style.get("name")))
            backend(next(iter(images.values()))[None])  # warm-up: first-call set-up is not the model's speed
            for photo_name, photo in images.items():
                row, clip_figures = measure_photo(backend, judge, photo, repeats, flicker_frames, video_blend)
                report.photos[photo_name] = row
                if photo_name not in references:
                    references[photo_name] = photo_figures(judge, photo, clip_figures)
            if clip is not None:
                report.video = flicker_figure.video_flicker(_video_stylizer(backend, video_blend), clip)
            reports.append(report)
    return reports, references


def trained_paintings(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A multi-style run's painting configs by style name, as trained (``styles`` entries may be
    image paths); empty when ``config`` lists none (exports carry only the names)."""
    if not config.get("styles"):
        return {}
    from fast_style.config.schema import StyleConfig
    from fast_style.config.style_set import style_set

    return {s["name"]: s for s in style_set(config.get("styles"), StyleConfig, config.get("style_weight_factors"))}


def model_styles(
    backend, config: dict[str, Any], weights: str | None, style: str | None, judges: dict
) -> list[tuple[str | None, torch.Tensor | None, Judge]]:
    """What to measure a model as: ``[(label, style weights (S,) to select, judge)]``. A single-style
    model: one entry, ``(None, None, judge)``. A multi-style model: each of its styles (or the one
    ``style=`` names), judged against that style's own painting."""
    styles = backend.styles
    if not styles:
        return [(None, None, judge_for(config, weights, style, judges))]
    if style and style not in styles:
        raise FastStyleError(
            f"{backend.path.name} holds the styles {', '.join(styles)}: pass style=<one of them> or leave style= out"
        )
    trained = trained_paintings(config)
    one_hot = torch.eye(len(styles))
    return [
        (name, one_hot[index], judge_for({**config, "style": trained.get(name, {"name": name})}, weights, None, judges))
        for index, name in enumerate(styles)
        if not style or name == style
    ]


def measure_photo(backend, judge: Judge, photo: torch.Tensor, repeats: int, flicker_frames: int, video_blend: float):
    """Every figure of ``backend`` on ``photo`` ``(3, H, W)`` in [0, 1]; returns the row and the
    flicker figures (``{}`` when ``flicker_frames`` is 0)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        output = backend(photo[None])[0]
        times.append(time.perf_counter() - start)
    row = judge.figures(output, photo)
    row["ms_per_mp"] = 1000 * min(times) / (photo.shape[-1] * photo.shape[-2] / 1e6)
    clip_figures = {}
    if flicker_frames:
        clip_figures = flicker_figure.clip_flicker(_video_stylizer(backend, video_blend), photo, flicker_frames)
        row["flicker"] = clip_figures["flicker"]
    return row, clip_figures


def photo_figures(judge: Judge, photo: torch.Tensor, clip_figures: dict[str, float]) -> dict[str, float]:
    """The photo's own figures (the "photo" row); its flicker is the unstylized clip's."""
    figures = {
        "style_gain": 0.0,
        "content_error": 0.0,
        "structure": 1.0,
        "artifact_share": quality.artifact_share(photo),
        "palette_distance": quality.palette_distance(photo, judge.painting),
    }
    if clip_figures:
        figures["flicker"] = clip_figures["flicker_clip"]
    return figures


def _video_stylizer(backend, video_blend: float):
    """The backend as ``stylize.py`` runs it on a video: frames in order, with ``video_blend``."""
    blend = TemporalBlend(video_blend)  # a fresh one per clip: no state carried between clips
    return lambda batch: blend(batch, backend(batch))


def format_table(reports: list[ModelReport], references: dict[str, dict[str, Any]]) -> str:
    """Per model: a row per photo and the mean; then the photos' own figures."""
    header = f"{'model':<28} {'photo':<22}" + "".join(f"{f:>17}" for f in FIGURES)
    lines = [header, "-" * len(header)]

    def row(model: str, photo: str, figures: dict[str, Any]) -> str:
        cells = "".join(f"{figures[f]:>17.4f}" if f in figures else f"{'':>17}" for f in FIGURES)
        return f"{model[:28]:<28} {photo[:22]:<22}{cells}"

    for report in reports:
        for photo, figures in report.photos.items():
            lines.append(row(report.name, photo, figures))
        lines.append(row(report.name, "MEAN", report.mean))
        layers = report.mean.get("style_gain_layers", {})
        lines.append(f"{'':<28} {'style gain per layer':<22} " + "  ".join(f"{n} {v:.3f}" for n, v in layers.items()))
        if report.video:
            video = report.video
            lines.append(
                f"{'':<28} {'video flicker':<22} {video['flicker']:.4f} (the input video: {video['flicker_clip']:.4f}; "
                f"{video['static_share']:.0%} of pixels counted)"
            )
    if references:
        lines.append("-" * len(header))
        for photo, figures in references.items():
            lines.append(row("(the photo itself)", photo, figures))
        lines.append(row("(the photo itself)", "MEAN", mean_figures(references.values())))
    return "\n".join(lines)


def to_json(reports: list[ModelReport], references: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "figures": {
            "style_gain": "higher is better: 1 - |G(out)-G(style)|^2 / |G(photo)-G(style)|^2, mean over style layers",
            "content_error": "lower: relative content-layer (relu2_2) error vs the photo",
            "structure": "higher: correlation of Sobel edge magnitudes, output vs photo",
            "artifact_share": "lower: share of luminance spectrum power at periods <= 4 px (Hann window)",
            "palette_distance": "lower: sliced Wasserstein-1 distance of RGB colours to the painting",
            "flicker": "lower: mean |S_t - W(S_t-1)| over valid pixels of a synthetic clip of the photo (known "
            "sub-pixel pan, zoom, rotation, noise), stylized frame by frame; the photo row: the unstylized clip",
            "ms_per_mp": "milliseconds per megapixel, batch 1, this machine",
        },
        "models": [
            {"name": r.name, "path": r.path, "style": r.style, "mean": r.mean, "photos": r.photos}
            | ({"video": r.video} if r.video else {})
            for r in reports
        ],
        "photos": {"photos": references, "mean": mean_figures(references.values())},
    }


def write_report(reports, references, out: str | Path) -> Path:
    text = json.dumps(to_json(reports, references), indent=2)
    return atomic_write(out, lambda tmp: Path(tmp).write_text(text))
