"""Config checks that run before anything heavy: one line naming the key, the value and what is allowed.

Hydra composes whatever the YAML and the command line say: ``data.batch_size=abc`` or
``data.image_size=50`` would only fail deep inside PyTorch with a long traceback. These checks run
at the start of ``train()`` and, through ``cli.preflight``, before ``train.py`` even imports torch.
Nothing here imports torch, Lightning or torchvision, so a bad invocation fails in well under a
second.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from fast_style.errors import FastStyleError

# torchvision's VGG configurations (torchvision.models.vgg.cfgs "D" and "E"): channel counts and
# "M" for max-pooling. Kept here so layer names can be checked without importing torchvision;
# tests/test_validation.py checks them against ``perceptual.known_layer_names``.
_VGG_CFGS = {
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}

# What ``lightning.Trainer(precision=...)`` accepts (its _PRECISION_INPUT), as strings and ints.
PRECISIONS = (
    "32",
    "32-true",
    "16-mixed",
    "bf16-mixed",
    "16-true",
    "bf16-true",
    "64",
    "64-true",
    "16",
    "bf16",
    "transformer-engine",
    "transformer-engine-float16",
)
DATA_SOURCES = ("hub", "folder", "packed")
RESUME_VALUES = ("true", "false", "auto")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_MISSING = object()


def vgg_layer_names(arch: str) -> list[str]:
    """conv1_1, relu1_1, ..., pool5 for ``arch`` (same naming as ``perceptual.vgg_layer_names``)."""
    names, block, index = [], 1, 1
    for item in _VGG_CFGS[arch]:
        if item == "M":
            names.append(f"pool{block}")
            block, index = block + 1, 1
        else:
            names += [f"conv{block}_{index}", f"relu{block}_{index}"]
            index += 1
    return names


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


class _Checker:
    """Reads keys of a composed config without resolving what it does not need (``run_dir`` needs Hydra)."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg

    def get(self, key: str, default: Any = _MISSING) -> Any:
        try:
            value = OmegaConf.select(self.cfg, key, default=_MISSING, throw_on_missing=False)
        except OmegaConfBaseException as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise FastStyleError(f"{key} cannot be resolved ({first}): fix the value or the interpolation") from exc
        if value is _MISSING or (isinstance(value, str) and value == "???"):
            if default is _MISSING:
                raise FastStyleError(f"{key} is required but not set: pass {key}=...")
            return default
        if OmegaConf.is_config(value):
            return OmegaConf.to_container(value, resolve=True)
        return value

    def fail(self, key: str, value: Any, allowed: str) -> None:
        raise FastStyleError(f"{key}={_show(value)} is not allowed: {allowed}")

    def number(self, key: str, check: Callable[[float], bool], allowed: str, default: Any = _MISSING) -> float:
        value = self.get(key, default)
        # bool is an int subclass: 'true' is not a weight.
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            self.fail(key, value, f"use a number {allowed}")
        if not check(value):
            self.fail(key, value, f"use a number {allowed}")
        return value

    def integer(self, key: str, check: Callable[[int], bool], allowed: str, default: Any = _MISSING) -> int:
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not check(value):
            self.fail(key, value, f"use an integer {allowed}")
        return value

    def boolean(self, key: str, default: Any = _MISSING) -> bool:
        value = self.get(key, default)
        if not isinstance(value, bool):
            self.fail(key, value, "use true or false")
        return value

    def choice(self, key: str, options: Iterable[str], default: Any = _MISSING) -> str:
        value = self.get(key, default)
        options = list(options)
        if str(value) not in options or isinstance(value, (bool, float)):
            self.fail(key, value, f"use one of {', '.join(options)}")
        return str(value)

    def existing(self, key: str, kind: str, hint: str) -> Path:
        value = self.get(key)
        if not isinstance(value, str) or not value:
            self.fail(key, value, f"use the path of an existing {kind}")
        path = Path(value).expanduser()
        exists = path.is_dir() if kind == "folder" else path.is_file()
        if not exists:
            raise FastStyleError(f"{key}={value} does not exist or is not a {kind}: {hint}")
        return path


def validate_train_config(cfg: DictConfig) -> None:
    """Check the knobs of ``configs/train.yaml`` users change; raise ``FastStyleError`` on the first bad one."""
    c = _Checker(cfg)
    c.integer("seed", lambda v: True, "(any integer)")
    c.boolean("compile")
    c.boolean("channels_last")

    # Loss weights: content may be 0 (pure texture synthesis), style must drive the training.
    c.number("loss.content_weight", lambda v: v >= 0, ">= 0")
    c.number("loss.style_weight", lambda v: v > 0, "> 0 (the style term is what training optimizes)")
    c.number("loss.tv_weight", lambda v: v >= 0, ">= 0")
    if c.get("optimizer.lr", None) is not None:
        c.number("optimizer.lr", lambda v: v > 0, "> 0 (e.g. 1e-3 for Adam)")

    # Data.
    source = c.choice("data.source", DATA_SOURCES)
    c.integer(
        "data.image_size", lambda v: v >= 32 and v % 4 == 0, ">= 32 that is a multiple of 4 (e.g. 256)"
    )  # the net downsamples twice by 2: other sizes come back a pixel off
    c.integer("data.batch_size", lambda v: v >= 1, ">= 1")
    c.integer("data.num_workers", lambda v: v >= 0, ">= 0 (0 loads in the main process)", default=0)
    if source == "folder":
        c.existing("data.root", "folder", "point data.root at a folder of photos (e.g. COCO train2014)")
    elif source == "packed":
        c.existing("data.path", "folder", "run scripts/prepare_data.py first or fix data.path")
    elif not c.get("data.path", None):
        raise FastStyleError(
            "data.path is required for data.source=hub: pass a Hub dataset id, e.g. detection-datasets/coco"
        )

    # Style painting: a local file, or a URL with the sha256 the download is checked against.
    image = c.get("style.image", None)
    if image:
        c.existing("style.image", "file", "fix style.image or pick a built-in style, e.g. style=starry_night")
    elif not c.get("style.url", None):
        raise FastStyleError("style.image is required for this style: pass style.image=/path/to/painting.jpg")
    sha = c.get("style.sha256", None)
    if sha is not None and (not isinstance(sha, str) or not _SHA256.match(sha)):
        c.fail("style.sha256", sha, "use 64 lowercase hex digits or null")
    if not image and sha is None:
        raise FastStyleError("style.sha256 is required with style.url so the download can be verified")
    if c.get("style.size", None) is not None:
        c.integer("style.size", lambda v: v >= 32, ">= 32 or null (keep the painting's size)")

    # Perceptual network.
    arch = c.choice("perceptual.arch", _VGG_CFGS)
    known = vgg_layer_names(arch)
    relus = [name for name in known if name.startswith("relu")]
    for key in ("perceptual.content_layers", "perceptual.style_layers"):
        layers = c.get(key)
        if not isinstance(layers, list) or not layers:
            c.fail(key, layers, f"use a non-empty list of {arch} layers, e.g. [{relus[3]}]")
        for layer in layers:
            if layer not in known:
                c.fail(key, layers, f"{layer!r} is not a {arch} layer; use names like {', '.join(relus)}")
    weights = c.get("perceptual.weights")
    if weights not in ("imagenet", "random"):
        c.existing(
            "perceptual.weights", "file", "use imagenet, random (tests only) or the path of a torchvision VGG .pth"
        )

    # Trainer.
    c.choice("trainer.precision", PRECISIONS)
    max_steps = c.integer("trainer.max_steps", lambda v: v > 0 or v == -1, "> 0 (or -1 with trainer.max_epochs > 0)")
    if max_steps == -1:
        c.integer("trainer.max_epochs", lambda v: v > 0, "> 0 when trainer.max_steps=-1")

    # Checkpoints, samples, resume.
    c.integer("checkpoint.every_n_steps", lambda v: v >= 1, ">= 1")
    c.integer("checkpoint.keep", lambda v: v >= 1 or v == -1, ">= 1 (newest periodic checkpoints kept) or -1 (all)")
    c.integer("samples.count", lambda v: v >= 0, ">= 0")
    c.integer("samples.every_n_steps", lambda v: v >= 0, ">= 0 (0: only at the end)")
    resume = c.get("resume", False)
    if str(resume).lower() not in RESUME_VALUES or not isinstance(resume, (bool, str)):
        c.fail("resume", resume, "use true (continue the newest run of this style), auto (continue if any) or false")
    if c.get("ckpt_path", None) is not None:
        c.existing("ckpt_path", "file", "pass the path of a last.ckpt or step_*.ckpt written by train.py")


def validate_stylize_config(cfg: DictConfig) -> None:
    """Check ``configs/stylize.yaml``: the checkpoint file and the device string."""
    c = _Checker(cfg)
    c.existing("ckpt", "file", "pass ckpt=<the path train.py printed as 'final checkpoint: ...'>")
    for key in ("input", "output"):
        value = c.get(key)
        if not isinstance(value, str) or not value:
            c.fail(key, value, "use a file or folder path")
    device = str(c.get("device", "auto"))
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", device):
        c.fail("device", device, "use auto, cpu, cuda or cuda:N")


def resume_mode(cfg: DictConfig) -> str:
    """``cfg.resume`` as one of ``true``, ``false``, ``auto`` (YAML gives a bool for the first two)."""
    return str(OmegaConf.select(cfg, "resume", default=False)).lower()
