"""The plain recipe, for comparison: the pytorch/examples fast_neural_style training loop.

    python scripts/plain_loop.py photos=DIR weights=../shared/weights/vgg16_hed_features.pth \
        style=starry_night steps=1200 size=128 out=plain/final.ckpt

Same TransformerNet, VGG16 taps, Adam 1e-3 and channels-last as train.py (``precision=32|bf16``), but the
published loss and nothing else: content = MSE of relu2_2; style = sum over relu1_2..relu4_3 of the
*sum* of squared Gram differences (G = F F^T / (C H W)), one style weight; no normalization, no
per-layer weights. The defaults (content 1, style 3e-4) are the balanced weights for the stand-in
VGG16 (see its README). It writes a checkpoint that ``stylize.py`` and ``scripts/evaluate.py`` read.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import MISSING, OmegaConf

from fast_style.checkpoint_format import CHECKPOINT_KEY
from fast_style.config import CONFIG_DIR
from fast_style.config.cli import launch
from fast_style.config.schema import at_least, choice, existing, setting
from fast_style.files import atomic_write
from fast_style.images import list_images, load_image
from fast_style.model.networks import TransformerNet
from fast_style.model.perceptual import VGGFeatures, gram_matrix
from fast_style.train.styles import load_style_image


@dataclass
class PlainLoopConfig:
    """``python scripts/plain_loop.py photos=DIR``: the plain recipe, for comparison."""

    photos: str = existing(MISSING, "folder", "pass photos=<a folder of training photos>")
    weights: str = "imagenet"  # VGG16 weights: imagenet or the path of a torchvision VGG16 .pth
    style: str = "starry_night"  # a configs/style name
    style_size: int = setting(256, **at_least(32))
    steps: int = setting(1200, **at_least(1))
    size: int = setting(128, ">= 32 that is a multiple of 4", lambda v: v >= 32 and v % 4 == 0)
    batch_size: int = setting(4, **at_least(1))
    lr: float = setting(1e-3, "> 0", lambda v: v > 0)
    content_weight: float = 1.0
    style_weight: float = 3e-4  # balanced for the stand-in VGG16 (its README)
    precision: str = choice("32", ("32", "bf16"))
    seed: int = 0
    out: str = "plain/final.ckpt"
    save_every: int = setting(0, **at_least(0))  # also write <out>_step<N>.ckpt every N steps (0: only out)


STYLE_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
CONTENT_LAYER = "relu2_2"


def random_crops(paths: list[Path], size: int, batch: int, rng: random.Random) -> torch.Tensor:
    out = []
    for path in rng.sample(paths, batch) if len(paths) >= batch else rng.choices(paths, k=batch):
        image = load_image(path)
        h, w = image.shape[-2:]
        scale = size / min(h, w)
        image = F.interpolate(
            image[None],
            size=(max(size, round(h * scale)), max(size, round(w * scale))),
            mode="bilinear",
            antialias=True,
        )[0]
        y, x = rng.randint(0, image.shape[1] - size), rng.randint(0, image.shape[2] - size)
        out.append(image[:, y : y + size, x : x + size])
    return torch.stack(out).clamp(0, 1)


def main(cfg) -> Path:
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    paths = list_images(cfg.photos)
    style_cfg = OmegaConf.load(CONFIG_DIR / "style" / f"{cfg.style}.yaml").style
    style_cfg.size = cfg.style_size
    net = TransformerNet().to(memory_format=torch.channels_last)
    vgg = VGGFeatures(STYLE_LAYERS, "vgg16", str(cfg.weights)).to(memory_format=torch.channels_last)
    with torch.no_grad():
        targets = {k: gram_matrix(v) for k, v in vgg(load_style_image(style_cfg)).items()}
    optimizer = torch.optim.Adam(net.parameters(), cfg.lr)
    dtype = torch.bfloat16 if cfg.precision == "bf16" else torch.float32
    start = time.perf_counter()
    for step in range(1, cfg.steps + 1):
        content = random_crops(paths, cfg.size, cfg.batch_size, rng).contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            stylized = net(content)
            features = vgg(stylized)
            with torch.no_grad():
                content_features = vgg(content, [CONTENT_LAYER])
        content_loss = F.mse_loss(features[CONTENT_LAYER].float(), content_features[CONTENT_LAYER].float())
        style_loss = sum((gram_matrix(features[k]) - targets[k]).square().sum(dim=(1, 2)).mean() for k in STYLE_LAYERS)
        loss = cfg.content_weight * content_loss + cfg.style_weight * style_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if cfg.save_every and step % cfg.save_every == 0 and step < cfg.steps:
            out = Path(cfg.out)
            save_checkpoint(net, style_cfg, cfg, out.with_name(f"{out.stem}_step{step}{out.suffix}"))
        if step % 100 == 0 or step == cfg.steps:
            print(
                f"step {step}: content {cfg.content_weight * content_loss.item():.4g} "
                f"style {cfg.style_weight * style_loss.item():.4g} ({time.perf_counter() - start:.0f} s)",
                flush=True,
            )
    out = save_checkpoint(net, style_cfg, cfg, Path(cfg.out))
    print(f"final checkpoint: {out}")
    return out


def save_checkpoint(net: TransformerNet, style_cfg, cfg, out: Path) -> Path:
    """A checkpoint in train.py's format (state dict + the model config), so stylize.py and evaluate.py read it."""
    config = {"style": OmegaConf.to_container(style_cfg), "perceptual": {"weights": str(cfg.weights)}}
    config["plain_loop"] = OmegaConf.to_container(cfg)
    checkpoint = {
        "state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
        CHECKPOINT_KEY: {"format_version": 1, "model": dict(net.config), "style": cfg.style, "config": config},
    }
    atomic_write(out, lambda tmp: torch.save(checkpoint, tmp))
    return out


if __name__ == "__main__":
    launch("plain_loop", main, config_schema=PlainLoopConfig)
