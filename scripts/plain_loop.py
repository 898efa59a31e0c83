"""The plain recipe, for comparison: the pytorch/examples fast_neural_style training loop.

    python scripts/plain_loop.py photos=DIR weights=../shared/weights/vgg16_hed_features.pth \
        style=starry_night steps=1200 size=128 out=plain/final.ckpt

Same TransformerNet, VGG16 taps, Adam 1e-3, bf16 autocast and channels-last as train.py, but the
published loss and nothing else: content = MSE of relu2_2; style = sum over relu1_2..relu4_3 of the
*sum* of squared Gram differences (G = F F^T / (C H W)), one style weight; no normalization, no
per-layer weights. The defaults (content 1, style 3e-4) are the balanced weights for the stand-in
VGG16 (see its README). It writes a checkpoint that ``stylize.py`` and ``scripts/evaluate.py`` read.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # runnable without install

from fast_style.checkpointing import CHECKPOINT_KEY, _torch_save  # noqa: E402
from fast_style.cli import CONFIG_DIR  # noqa: E402
from fast_style.images import list_images, load_image  # noqa: E402
from fast_style.networks import TransformerNet  # noqa: E402
from fast_style.perceptual import VGGFeatures, gram_matrix  # noqa: E402
from fast_style.training import load_style_image  # noqa: E402

DEFAULTS = {
    "photos": "???",
    "weights": "imagenet",
    "style": "starry_night",
    "style_size": 256,
    "steps": 1200,
    "size": 128,
    "batch_size": 4,
    "lr": 1e-3,
    "content_weight": 1.0,
    "style_weight": 3e-4,
    "precision": "32",
    "seed": 0,
    "out": "plain/final.ckpt",
}
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


def main(argv: list[str]) -> Path:
    cfg = OmegaConf.merge(OmegaConf.create(DEFAULTS), OmegaConf.from_dotlist(argv))
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
        if step % 100 == 0 or step == cfg.steps:
            print(
                f"step {step}: content {cfg.content_weight * content_loss.item():.4g} "
                f"style {cfg.style_weight * style_loss.item():.4g} ({time.perf_counter() - start:.0f} s)",
                flush=True,
            )
    config = {"style": OmegaConf.to_container(style_cfg), "perceptual": {"weights": str(cfg.weights)}}
    config["plain_loop"] = OmegaConf.to_container(cfg)
    checkpoint = {
        "state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
        CHECKPOINT_KEY: {"format_version": 1, "model": dict(net.config), "style": cfg.style, "config": config},
    }
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    _torch_save(checkpoint, out)
    print(f"final checkpoint: {out}")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
