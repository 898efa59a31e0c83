"""Every key of every command: its type, its default and the values it allows, declared once.

The dataclasses below are Hydra structured configs, registered in Hydra's ConfigStore under
``schema/<name>``. The YAML files in ``configs/`` extend them (``- /schema/train@_here_`` in a
defaults list) and hold only the options: a style's painting, a data source's location, a model
size. Composition therefore checks key names and types (``data.bacth_size``, ``data.batch_size=abc``),
and ``validate`` checks the rules below (``data.image_size=50``, ``data.root=/typo``). Both end as
one line, ``<key>=<value> is not allowed: use <type> <allowed>``, before torch is imported.

Nothing here imports torch. A field's ``allowed`` text follows its type's phrase ("an integer",
"a number", "a list", "true or false"); ``check`` takes the resolved, typed value (never None:
``None`` is allowed exactly where the type says ``| None``). Rules that involve several keys are
the ``cross_check`` functions of the nodes they belong to.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from fast_style.model.vgg_layers import ARCHITECTURES, vgg_layer_names

if TYPE_CHECKING:
    from fast_style.config.validate import Node


# -- how a rule is written ---------------------------------------------------------------------
def setting(
    default: Any = MISSING,
    allowed: str = "",
    check: Callable[[Any], bool] | None = None,
    factory: Callable[[], Any] | None = None,
) -> Any:
    """A key with its default (or ``factory``) and, optionally, the values it allows."""
    metadata = {"allowed": allowed, "check": check}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def choice(default: Any, options: tuple[str, ...], allowed: str | None = None) -> Any:
    """A string key taking one of ``options`` (compared case-insensitively)."""
    lowered = {o.lower() for o in options}
    return setting(default, allowed or f"one of {', '.join(options)}", lambda v: str(v).lower() in lowered)


def existing(default: Any, kind: str, hint: str) -> Any:
    """A path key that must name an existing ``kind`` (``file`` or ``folder``); ``hint`` says how to fix it."""
    return field(default=default, metadata={"exists": kind, "hint": hint})


def at_least(low: float, note: str = "") -> dict[str, Any]:
    return {"allowed": f">= {low}{note}", "check": lambda v: v >= low}


def _positive(v: float) -> bool:
    return v > 0


# -- shared vocabulary -------------------------------------------------------------------------
# What ``pytorch_lightning.Trainer(precision=...)`` accepts (its _PRECISION_INPUT), as strings.
TRAINER_PRECISIONS = ("32", "32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64", "64-true", "16")
TRAINER_PRECISIONS += ("bf16", "transformer-engine", "transformer-engine-float16")
# stylize.py precision= names (and their spellings) -> the canonical three.
STYLIZE_PRECISIONS = {"32": "32", "fp32": "32", "float32": "32", "bf16": "bf16", "bfloat16": "bf16"}
STYLIZE_PRECISIONS |= {"fp16": "fp16", "16": "fp16", "float16": "fp16"}
DATA_SOURCES = ("hub", "folder", "packed")
EXPORT_FORMATS = ("onnx", "torchscript", "safetensors", "openvino")
DEFAULT_EXPORT_FORMATS = EXPORT_FORMATS[:3]  # openvino is an optional extra
STYLIZE_BACKENDS = ("auto", "openvino")
OPENVINO_INSTALL = 'pip install -e ".[openvino]" (or pip install openvino)'
RESUME_VALUES = ("true", "false", "auto")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
_STYLIZE_DEVICE = re.compile(r"auto|cpu|mps|gpu|cuda(:\d+)?")  # gpu: OpenVINO's (Intel) GPU


def default_workers() -> int:
    """DataLoader worker processes: 4, or fewer on a machine with fewer cores."""
    return min(4, os.cpu_count() or 1)


def tile_setting(value: Any) -> str | int | None:
    """``tile=`` as ``"auto"``, ``None`` (off) or a tile size in pixels; ``"invalid"`` otherwise."""
    text = str(value).strip().lower()
    if text == "auto":
        return "auto"
    if text in ("off", "false", "none", "0"):
        return None
    try:
        size = int(text)
    except ValueError:
        return "invalid"
    return size if size >= 16 else "invalid"


def device_setting(default: str = "auto") -> Any:
    return setting(default, "auto, cpu, cuda or cuda:N", lambda v: bool(_DEVICE.fullmatch(v)))


def formats_setting() -> Any:
    return setting(
        allowed=f"of {', '.join(EXPORT_FORMATS)} ([] for none)",
        check=lambda v: all(f in EXPORT_FORMATS for f in v),
        factory=lambda: list(DEFAULT_EXPORT_FORMATS),
    )


def openvino_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None  # without importing it (no torch here)


def openvino_missing(node: Node, what: str) -> None:
    """Refuse, before anything runs, a command that needs OpenVINO where it is not installed."""
    if not openvino_installed():
        node.error(f"{what} needs OpenVINO, an optional extra: {OPENVINO_INSTALL}")


# -- train.py ----------------------------------------------------------------------------------
def _layer_weights_ok(weights: Any, layers: int) -> bool:
    """One style-layer weight list: ``layers`` numbers >= 0, not all 0."""
    return (
        isinstance(weights, list)
        and len(weights) == layers
        and all(isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0 for w in weights)
        and any(weights)
    )


@dataclass
class StyleConfig:
    """The painting: a built-in style (``configs/style/*.yaml``: URL + sha256) or a local file."""

    name: str = MISSING  # names the run folder (style=custom: the painting's file name)
    url: str | None = None
    sha256: str | None = setting(None, "64 lowercase hex digits or null", lambda v: bool(_SHA256.fullmatch(v)))
    image: str | None = existing(None, "file", "fix style.image or pick a built-in style, e.g. style=starry_night")
    size: int | None = setting(512, ">= 32 or null (keep the painting's size)", lambda v: v >= 32)
    style_weight_factor: float = setting(1.0, "> 0 (multiplies loss.style_weight)", _positive)

    @staticmethod
    def cross_check(node: Node) -> None:
        if node.get("image"):
            return
        if not node.get("url"):
            node.error("style.image is required for this style: pass style.image=/path/to/painting.jpg")
        if node.get("sha256") is None:
            node.error("style.sha256 is required with style.url so the download can be verified")


@dataclass
class ModelConfig:
    """The transformer net (``model=johnson|small``)."""

    _target_: str = "fast_style.model.networks.TransformerNet"
    channels: int = setting(32, **at_least(1, " (the paper: 32)"))
    residual_blocks: int = setting(5, **at_least(0, " (the paper: 5)"))
    # tanh: 0.5 + 0.59 tanh, bounded (jcjohnson, lengstrom); linear: unbounded (pytorch/examples).
    # New nets default to tanh (docs/quality.md: a linear output paints out-of-range values the loss
    # rewards and clamping turns dark); checkpoints without the key were linear and stay so.
    output: str = choice("tanh", ("linear", "tanh"))
    # Blur before the stride-2 convs and upsample bilinearly: strokes follow sub-pixel motion
    # (steadier video, docs/video.md). Off: the published net.
    antialias: bool = False


@dataclass
class PerceptualConfig:
    """The frozen VGG of the loss (``perceptual=vgg16|vgg19``)."""

    arch: str = choice("vgg16", ARCHITECTURES)
    weights: str = "imagenet"  # imagenet | random (tests only) | /path/to/vgg.pth (torchvision layout)
    content_layers: list[str] = field(default_factory=lambda: ["relu2_2"])
    style_layers: list[str] = field(default_factory=lambda: ["relu1_2", "relu2_2", "relu3_3", "relu4_3"])

    @staticmethod
    def cross_check(node: Node) -> None:
        arch = node.get("arch")
        known = vgg_layer_names(arch)
        relus = [name for name in known if name.startswith("relu")]
        for key in ("content_layers", "style_layers"):
            layers = node.get(key)
            if not layers:
                node.fail(key, layers, f"a non-empty list of {arch} layers, e.g. [{relus[3]}]")
            for layer in layers:
                if layer not in known:
                    node.refuse(key, layers, f"{layer!r} is not a {arch} layer; use names like {', '.join(relus)}")
        if node.get("weights") not in ("imagenet", "random"):
            node.exists("weights", "file", "use imagenet, random (tests only) or the path of a torchvision VGG .pth")


@dataclass
class LossConfig:
    """Loss weights (pytorch/examples definitions; defaults for torchvision's ImageNet VGG16)."""

    content_weight: float = setting(1.0e5, **at_least(0))
    style_weight: float = setting(1.0e10, "> 0 (the style term is what training optimizes)", _positive)
    tv_weight: float = setting(0.0, **at_least(0))
    pixel_weight: float = setting(0.0, **at_least(0, " (0: no pixel-space content term)"))
    normalize: bool = False  # true: scale-free relative errors (weights carry over between VGG files)
    # Weight of each perceptual.style_layers entry; null: 1 for every layer (see TrainConfig.cross_check).
    style_layer_weights: list[float] | None = None
    # Stability training (fast_style/model/stability.py): mean |W(f(x)) - f(W(x) + n)| for a random
    # smooth motion W and noise n per image; 0 = off (the published recipe). Motion strengths are in
    # pixels at data.image_size; noise is a standard deviation on the [0, 1] scale.
    stability_weight: float = setting(0.0, **at_least(0, " (0: off)"))
    stability_shift: float = setting(2.0, **at_least(0, " (pixels)"))
    stability_rotation: float = setting(1.0, **at_least(0, " (degrees)"))
    stability_zoom: float = setting(0.02, "from 0 to 0.5 (zoom fraction)", lambda v: 0.0 <= v <= 0.5)
    stability_flow: float = setting(1.0, **at_least(0, " (pixels)"))
    stability_noise: float = setting(0.02, "from 0 to 1 (standard deviation)", lambda v: 0.0 <= v <= 1.0)
    # true: W(f(x)) is a fixed target and only f(W(x) + n) learns from the term (false: both do).
    stability_detach: bool = False
    # How both warps resample: a sub-pixel bilinear warp also blurs, which the term then asks of the
    # strokes (fast_style/model/stability.py); bicubic blurs much less.
    stability_interpolation: str = choice("bilinear", ("bilinear", "bicubic"))


@dataclass
class DataConfig:
    """Training photos (``data=coco|folder|packed``; ``fast_style.train.data.PhotoDataModule``)."""

    _target_: str = "fast_style.train.data.PhotoDataModule"
    source: str = choice(MISSING, DATA_SOURCES)
    # The net downsamples twice by 2: other sizes come back a pixel off.
    image_size: int = setting(256, ">= 32 that is a multiple of 4 (e.g. 256)", lambda v: v >= 32 and v % 4 == 0)
    batch_size: int = setting(4, **at_least(1))
    num_workers: int = setting(default_workers(), **at_least(0, " (0 loads in the main process)"))
    seed: int = "${seed}"  # type: ignore[assignment]


@dataclass
class HubData(DataConfig):
    """``datasets.load_dataset(path, name, split, data_files, streaming)``: the Hub or local files."""

    source: str = "hub"
    path: str = setting(MISSING, "a Hub dataset id, e.g. detection-datasets/coco", bool)
    name: str | None = None
    split: str = "train"
    data_files: Any = None
    image_column: str = "image"
    streaming: bool = True
    shuffle_buffer: int = setting(1000, **at_least(1))


@dataclass
class FolderData(DataConfig):
    """Every image under ``root``, searched recursively."""

    source: str = "folder"
    root: str = existing(MISSING, "folder", "point data.root at a folder of photos (e.g. COCO train2014)")


@dataclass
class PackedData(DataConfig):
    """A folder written by ``scripts/prepare_data.py``."""

    source: str = "packed"
    path: str = existing(MISSING, "folder", "run scripts/prepare_data.py first or fix data.path")


@dataclass
class TrainerConfig:
    """``pytorch_lightning.Trainer`` arguments (add others with ``+trainer.<name>=...``)."""

    _target_: str = "pytorch_lightning.Trainer"
    accelerator: str = "auto"
    strategy: Any = "auto"
    devices: Any = 1
    num_nodes: int = setting(1, **at_least(1))
    precision: str = choice("bf16-mixed", TRAINER_PRECISIONS)  # Grams and losses stay fp32 in every mode
    max_steps: int = setting(40000, "> 0 (or -1 with trainer.max_epochs > 0)", lambda v: v > 0 or v == -1)
    max_epochs: int = -1
    log_every_n_steps: int = setting(25, **at_least(1))
    gradient_clip_val: float | None = None
    enable_model_summary: bool = False
    enable_progress_bar: bool = True

    @staticmethod
    def cross_check(node: Node) -> None:
        if node.get("max_steps") == -1 and node.get("max_epochs") <= 0:
            node.fail("max_epochs", node.get("max_epochs"), "an integer > 0 when trainer.max_steps=-1")


@dataclass
class OptimizerConfig:
    """A partial ``torch.optim`` constructor (``optimizer._target_=torch.optim.AdamW`` etc.)."""

    _target_: str = "torch.optim.Adam"
    _partial_: bool = True
    lr: float | None = setting(1.0e-3, "> 0 (e.g. 1e-3 for Adam)", _positive)


@dataclass
class CheckpointConfig:
    every_n_steps: int = setting(1000, **at_least(1))  # periodic checkpoints (plus last.ckpt)
    keep: int = setting(3, ">= 1 (newest periodic checkpoints kept) or -1 (all)", lambda v: v >= 1 or v == -1)


@dataclass
class ExportSettings:
    """Exports of ``final.ckpt``, each checked against PyTorch after writing."""

    formats: list[str] = formats_setting()
    out_dir: str | None = None  # default: next to the checkpoint

    @staticmethod
    def cross_check(node: Node) -> None:
        if "openvino" in (node.get("formats") or []):
            openvino_missing(node, f"{node.key('formats')}=[...,openvino,...]")


@dataclass
class SamplesConfig:
    count: int = setting(4, **at_least(0))  # fixed photos stylized during training as a visual check
    every_n_steps: int = setting(500, **at_least(0, " (0: only at the end)"))


@dataclass
class EvaluateSettings:
    """At the end of training: the final model's quality figures (``scripts/evaluate.py``'s), logged as ``eval/*``."""

    photos: str | None = existing(None, "folder", "point evaluate.photos at a folder of held-out photos, or null")
    size: int | None = setting(256, ">= 16 or null (native size)", lambda v: v >= 16)  # photos' longer side


@dataclass
class TrainConfig:
    """``python train.py``: ``configs/train.yaml`` and its groups."""

    seed: int = 0
    compile: bool = False  # torch.compile the transformer and the VGG (checkpoints stay plain)
    channels_last: bool = True  # NHWC for both nets: faster on GPUs and on AMX CPUs
    fast_kernels: bool | None = None  # CPU fast paths (fast_style.model.cpu_kernels); null: $FAST_STYLE_FAST_KERNELS
    output_root: str = "checkpoints"
    run_dir: str = "${hydra:runtime.output_dir}"  # every file of a run lands here
    resume: str = choice(
        "false", RESUME_VALUES, "true (continue the newest run of this style), auto (continue if any) or false"
    )
    ckpt_path: str | None = existing(None, "file", "pass the path of a last.ckpt or step_*.ckpt written by train.py")
    style: StyleConfig = field(default_factory=StyleConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    perceptual: PerceptualConfig = field(default_factory=PerceptualConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: Any = MISSING  # a DataConfig subclass, chosen by data=
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: Any = None  # {name: Lightning logger config}, chosen by logger=
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: Any = None  # a partial LR scheduler taking the optimizer (stepped every step)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    export: ExportSettings = field(default_factory=ExportSettings)
    samples: SamplesConfig = field(default_factory=SamplesConfig)
    evaluate: EvaluateSettings = field(default_factory=EvaluateSettings)  # photos null: the sample photos
    # Several styles in one net (conditional instance norm): built-in style names or painting paths.
    # null: the single style of style=. Each keeps its own size and style_weight_factor.
    styles: list[str] | None = None
    # One factor per styles entry, in order, replacing each style's own style_weight_factor:
    # styles=[starry_night,wave] style_weight_factors=[0.5,1] (docs/multi_style.md measures why).
    style_weight_factors: list[float] | None = None
    # One loss.style_layer_weights list per styles entry, in order (null entries: loss.style_layer_weights),
    # so each painting keeps its own stroke scale in the shared net (docs/multi_style.md):
    # styles=[starry_night,the_scream] "per_style_layer_weights=[[8,1,0.5,0.25],[8,1,1,0.5]]".
    # list[Any]: OmegaConf rejects ints in a typed nested list; cross_check types the numbers.
    per_style_layer_weights: list[Any] | None = None
    # A checkpoint (single- or multi-style) to start from: its weights, matched by style name.
    init_from: str | None = existing(None, "file", "pass the final.ckpt of a trained net")
    # all: train every weight; norms: only the per-style scales and shifts of the styles that
    # init_from lacks (adding a style; the others stay bit-identical).
    train_only: str = choice("all", ("all", "norms"))

    @staticmethod
    def cross_check(node: Node) -> None:
        from fast_style.config.style_set import style_set

        # unknown entries, repeated names and factors that do not match the styles are one line each
        styles = style_set(node.get("styles"), StyleConfig, node.get("style_weight_factors"))
        if node.get("styles") is not None and len(styles) < 2:
            node.fail("styles", node.get("styles"), "a list of at least 2 styles (for one: style=<name>)")
        if node.get("train_only") == "norms" and not (node.get("init_from") and styles):
            node.error("train_only=norms adds styles to a trained net: pass styles=[...] and init_from=<its .ckpt>")
        if styles and "openvino" in (node.get("export.formats") or []):  # refused now, not after training
            node.error(
                "export.formats=[...,openvino] takes one style per model: drop openvino, then bake one style "
                "with python scripts/export.py ckpt=<final.ckpt> style=<name> formats=[openvino]"
            )
        scheduler = node.get("scheduler") or {}
        if "total_steps" in scheduler and not 0 <= scheduler.get("warmup_steps", 0) < scheduler["total_steps"]:
            # scheduler=cosine decays over trainer.max_steps, which is -1 when training by epochs
            node.error(
                f"scheduler total_steps={scheduler['total_steps']} must exceed warmup_steps="
                f"{scheduler.get('warmup_steps', 0)} (>= 0): set trainer.max_steps or scheduler.total_steps"
            )
        weights = node.get("loss.style_layer_weights")
        layers = node.get("perceptual.style_layers")
        if weights is not None and not _layer_weights_ok(weights, len(layers)):
            node.fail(
                "loss.style_layer_weights",
                weights,
                f"null or {len(layers)} numbers >= 0 (not all 0), one per perceptual.style_layers {layers}",
            )
        per_style = node.get("per_style_layer_weights")
        if per_style is not None:
            if not styles:
                node.error(
                    "per_style_layer_weights is for styles=[...]: drop it, and weigh one style's layers "
                    "with loss.style_layer_weights=[...]"
                )
            if len(per_style) != len(styles) or not all(
                row is None or _layer_weights_ok(row, len(layers)) for row in per_style
            ):
                node.fail(
                    "per_style_layer_weights",
                    per_style,
                    f"{len(styles)} entries, one per styles entry ({', '.join(s['name'] for s in styles)}), each null "
                    f"or a list of {len(layers)} numbers >= 0 (not all 0), one per perceptual.style_layers {layers}",
                )


# -- stylize.py and the scripts (the benchmarks declare theirs in scripts/) ----------------------
@dataclass
class StylizeConfig:
    """``python stylize.py ckpt=MODEL input=PHOTO_FOLDER_OR_VIDEO output=FILE_OR_FOLDER``."""

    ckpt: str = existing(MISSING, "file", "pass ckpt=<the path train.py printed as 'final checkpoint: ...'>")
    input: str = setting(MISSING, "a file or folder path", bool)  # an image, a folder of images or a video
    output: str = setting(MISSING, "a file or folder path", bool)
    device: str = setting(
        "auto", "auto, cpu, cuda, cuda:N or (backend=openvino) gpu", lambda v: bool(_STYLIZE_DEVICE.fullmatch(v))
    )
    precision: str = choice("32", tuple(STYLIZE_PRECISIONS), "32, bf16 or fp16")  # PyTorch/OpenVINO; ONNX runs fp32
    # auto: the runtime follows ckpt's suffix (.xml: OpenVINO); openvino: OpenVINO for any model file
    backend: str = choice("auto", STYLIZE_BACKENDS)
    compile: bool = False  # torch.compile .ckpt/.safetensors models: ~20 s once, then faster (folders, videos)
    fast_kernels: bool | None = None  # CPU fast paths for precision=bf16/fp16; null: $FAST_STYLE_FAST_KERNELS
    tile: str = setting("auto", "auto, off or a tile size >= 16 pixels", lambda v: tile_setting(v) != "invalid")
    strength: float = setting(1.0, "from 0 (the photo) to 1 (full style)", lambda v: 0.0 <= v <= 1.0)
    preserve_color: bool = False  # keep the photo's colours, take the stylized luminance
    scale: float = setting(1.0, "from 0.01 to 16 (1 = native size)", lambda v: 0.01 <= v <= 16)
    batch_size: int = setting(4, **at_least(1))  # images of equal size (and video frames) per forward pass
    overwrite: bool = False  # allow writing over the input file(s)
    # A multi-style model's style: a name, a blend [name_a:0.7,name_b:0.3] (weights normalized) or all
    style: Any = None
    # Videos: blend each output frame with the motion-compensated previous one (fast_style/infer/temporal.py).
    video_blend: float = setting(0.0, "from 0 (off) to 0.9", lambda v: 0.0 <= v <= 0.9)

    @staticmethod
    def cross_check(node: Node) -> None:
        openvino = node.get("backend") == "openvino" or str(node.get("ckpt")).lower().endswith(".xml")
        if openvino:
            openvino_missing(
                node, f"{node.key('backend')}=openvino" if node.get("backend") == "openvino" else "an .xml model"
            )
            if node.get("compile"):
                node.error("compile=true is torch.compile; OpenVINO compiles by itself: drop compile=true")
            if str(node.get("device")).startswith(("cuda", "mps")):
                node.error(f"device={node.get('device')} is not an OpenVINO device: use device=cpu, gpu or auto")
        elif node.get("device") == "gpu":
            node.error("device=gpu is OpenVINO's (Intel) GPU: add backend=openvino, or use device=cuda for PyTorch")


@dataclass
class ExportConfig(ExportSettings):
    """``python scripts/export.py ckpt=CHECKPOINT [formats=[...]] [out_dir=FOLDER]``."""

    ckpt: str = existing(MISSING, "file", "pass ckpt=<a .ckpt written by train.py>")
    # A multi-style checkpoint: null exports it with a style_weights input; a name or a blend
    # ([name_a:0.7,name_b:0.3]) bakes that style into a plain single-input stylizer.
    style: Any = None


@dataclass
class PrepareDataConfig:
    """``python scripts/prepare_data.py data=folder data.root=DIR out=NEW_FOLDER [size=256]``."""

    seed: int = 0
    data: Any = MISSING
    out: str = setting(MISSING, "the path of a new or empty folder", bool)
    size: int = setting("${data.image_size}", **at_least(32, " (>= the data.image_size you will train at)"))
    limit: int | None = setting(None, ">= 1 or null (every photo)", lambda v: v >= 1)  # e.g. of the COCO stream
    workers: int = setting(2, **at_least(1))  # decoding processes

    @staticmethod
    def cross_check(node: Node) -> None:
        if node.get("data.source") == "packed":
            node.error("data=packed is already packed: pack from data=folder or data=coco")


@dataclass
class ContactSheetConfig:
    """``python scripts/contact_sheet.py runs=[MULTIRUN_OR_RUN_FOLDERS_OR_CKPTS] [photos=[...]]``."""

    runs: list[str] = setting(MISSING, "of multirun folders, run folders or .ckpt files", bool)
    photos: list[str] | None = None  # content photos; null: three built-in generated scenes
    size: int = setting(256, **at_least(16, " (pixels per cell)"))
    out: str | None = None  # default: <folder>/contact_sheet.png for one folder, else ./contact_sheet.png
    metrics: bool = False  # print style gain, structure and artifact share under each row (scripts/evaluate.py's)
    labels: list[str] | None = None  # one per row (a multi-style model: a row per style), not the overrides


@dataclass
class EvaluateConfig:
    """``python scripts/evaluate.py ckpt=[MODELS_RUN_OR_MULTIRUN_FOLDERS] photos=FOLDER``."""

    # One path or a list: model files (any format), run folders, multirun folders.
    ckpt: Any = setting(MISSING, "a model file, run folder or multirun folder, or a list of them", bool)
    photos: str = existing(MISSING, "folder", "pass photos=<a folder of held-out photos>")
    weights: str | None = None  # VGG weights to measure with; null: those each model was trained with
    # The painting (style name or image path); null: the model's own. Multi-style models: one of their styles.
    style: str | None = None
    size: int | None = setting(None, ">= 16 or null (native size)", lambda v: v >= 16)  # photos' longer side
    device: str = device_setting("cpu")
    repeats: int = setting(1, **at_least(1))  # timed runs per photo (the fastest counts)
    out: str = "evaluation.json"  # the full report (per photo, per layer)
    # The flicker figure (fast_style/flicker.py): a synthetic clip of this many frames per photo.
    flicker_frames: int = setting(8, ">= 2, or 0 to skip the flicker figure", lambda v: v == 0 or v >= 2)
    video: str | None = existing(None, "file", "pass video=<a video file> or leave it out")  # real-video flicker
    video_frames: int = setting(30, **at_least(2, " (the video's first frames measured)"))
    video_blend: float = setting(0.0, "from 0 (off) to 0.9", lambda v: 0.0 <= v <= 0.9)  # stylize.py's, measured


@dataclass
class AppConfig:
    """``python scripts/app.py [ckpt=[a.onnx,b.ckpt]] [host=...] [port=...]``: the web app.

    Types only: the ranges and the rules between keys (a public host needs auth=) are checked by
    ``fast_style.webapp.settings.settings_from_config``, which also finds the models.
    """

    ckpt: Any = field(default_factory=list)  # model files to offer (any format), besides ...
    checkpoints_dir: str | None = "checkpoints"  # ... every final.ckpt under this folder (null: only ckpt=)
    host: str = "127.0.0.1"  # 0.0.0.0 (or any non-loopback address) serves the network and needs auth=
    port: int = 7860
    auth: Any = None  # user:password (or a list of them); default: $FAST_STYLE_APP_AUTH if set
    device: str = device_setting()
    precision: str = "32"  # 32 | bf16 | fp16 (PyTorch models; ONNX runs in float32)
    max_upload_mb: float = 25.0  # larger uploads are refused by the server before anything is decoded
    max_megapixels: float = 16.0  # larger photos are refused after reading their header, before decoding
    concurrency: int = 2  # requests processed at once (each model runs one image at a time)
    max_queue: int = 32  # requests waiting beyond this are refused ("Queue is full")
    webcam_size: int = 384  # default longer side of the stylized webcam frames (nearest of 256, 384, 512, 768)
    result_minutes: float = 10.0  # stylized results stay downloadable this long, then are deleted


SCHEMAS: dict[str, type] = {
    "train": TrainConfig,
    "stylize": StylizeConfig,
    "export": ExportConfig,
    "prepare_data": PrepareDataConfig,
    "contact_sheet": ContactSheetConfig,
    "evaluate": EvaluateConfig,
    "app": AppConfig,
}
DATA_SCHEMAS: dict[str, type] = {"hub": HubData, "folder": FolderData, "packed": PackedData}


def register(extra: dict[str, type] | None = None) -> None:
    """Put the schemas (and a script's ``extra`` ones) into Hydra's ConfigStore (``schema/<command>``,
    ``schema/data/<source>``) and register the ``style_stem`` resolver; idempotent."""
    store = ConfigStore.instance()
    for name, node in {**SCHEMAS, **(extra or {})}.items():
        store.store(group="schema", name=name, node=node)
    for name, node in DATA_SCHEMAS.items():
        store.store(group="schema/data", name=name, node=node)
    if not OmegaConf.has_resolver("style_stem"):
        OmegaConf.register_new_resolver("style_stem", lambda path: Path(str(path)).stem)
    if not OmegaConf.has_resolver("run_name"):
        from fast_style.config.style_set import run_name

        OmegaConf.register_new_resolver("run_name", run_name)


register()
