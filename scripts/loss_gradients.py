"""Which loss term pushes a net towards fine texture? ``python scripts/loss_gradients.py photos=DIR``.

For each photo (or, with ``ckpt=``, a model's output for it) this prints, per loss term (each
style layer's Gram error, the content error and the total variation, in the normalized units of ``loss.normalize``): the
term's value, the norm of its gradient with respect to the image, that norm times the term's weight
in the chosen ``loss`` recipe, and the share of the gradient's luminance power at periods <= 4 px
(``fast_style.quality.artifact_share``; a natural photo has ~0.01-0.05). A term whose weighted
gradient is large *and* high-frequency is what drives a net to paint dot-and-stripe texture:
docs/quality.md shows it for the stand-in VGG's deep layers.

    python scripts/loss_gradients.py photos=held_out/ weights=../shared/weights/vgg16_hed_features.pth \
        loss=standin [ckpt=run/final.ckpt] [style=starry_night] [style_size=256] [size=256]
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from omegaconf import MISSING, OmegaConf

from fast_style.config import CONFIG_DIR
from fast_style.config.cli import launch
from fast_style.config.schema import LossConfig, at_least, existing, setting
from fast_style.images import list_images, load_image
from fast_style.model.perceptual import PerceptualLoss, total_variation
from fast_style.quality import artifact_share
from fast_style.train.styles import load_style_image


@dataclass
class LossGradientsConfig:
    """``python scripts/loss_gradients.py photos=DIR``: each loss term's gradient and its spectrum."""

    photos: str = existing(MISSING, "folder", "pass photos=<a folder of photos>")
    weights: str = "imagenet"  # VGG16 weights: imagenet or the path of a torchvision VGG16 .pth
    style: str = "starry_night"  # a configs/style name
    style_size: int = setting(256, **at_least(32))
    size: int = setting(256, **at_least(32))  # longer side the photos are resized to
    ckpt: str | None = None  # measure at this model's output instead of at the photo
    loss: LossConfig = field(default_factory=LossConfig)


def term_gradients(
    loss: PerceptualLoss, image: torch.Tensor, photo: torch.Tensor
) -> dict[str, tuple[float, torch.Tensor]]:
    """``{term: (value, d value / d image)}`` for each style layer, the content layer(s) and the
    total variation of the image (``"tv image"``).

    ``image`` and ``photo``: ``(1, 3, H, W)`` in [0, 1]; values and gradients are unweighted (but
    normalized when ``loss.normalize``); gradients are ``(3, H, W)``.
    """
    with torch.no_grad():
        photo_features = loss.vgg(photo, loss.content_layers)
    terms = [("style", n) for n in loss.style_layers] + [("content", n) for n in loss.content_layers]
    out = {}
    for kind, name in terms:
        x = image.detach().clone().requires_grad_(True)
        features = loss.vgg(x, [name])[name]
        if kind == "style":
            value = loss.style_layer_error(features, name)
        else:
            value = loss.content_error(features, photo_features[name])
        (grad,) = torch.autograd.grad(value, x)
        out[f"{kind} {name}"] = (value.item(), grad[0])
    x = image.detach().clone().requires_grad_(True)
    value = total_variation(x)
    (grad,) = torch.autograd.grad(value, x)
    out["tv image"] = (value.item(), grad[0])
    return out


def main(cfg) -> None:
    torch.manual_seed(0)
    style_cfg = OmegaConf.load(CONFIG_DIR / "style" / f"{cfg.style}.yaml").style
    style_cfg.size = cfg.style_size
    loss = PerceptualLoss(
        load_style_image(style_cfg),
        weights=str(cfg.weights),
        normalize=cfg.loss.normalize,
        style_layer_weights=cfg.loss.style_layer_weights,
    )
    stylizer = None
    if cfg.ckpt:
        from fast_style.infer.stylizer import load_stylizer

        stylizer = load_stylizer(cfg.ckpt)
    style_weight = cfg.loss.style_weight * style_cfg.get("style_weight_factor", 1)
    print(f"{'photo':<16} {'term':<16} {'value':>9} {'|grad|':>9} {'weight':>9} {'weighted':>9} {'<=4px':>6}")
    for path in list_images(cfg.photos):
        photo = load_image(path)[None]
        h, w = photo.shape[-2:]
        scale = cfg.size / max(h, w)
        photo = F.interpolate(photo, size=(round(h * scale), round(w * scale)), mode="bicubic", antialias=True)
        photo = photo.clamp(0, 1)
        with torch.no_grad():
            image = photo if stylizer is None else stylizer(photo).float()
        print(f"{path.name:<16} {'(the image)':<16} {'':>9} {'':>9} {'':>9} {'':>9} {artifact_share(image[0]):6.3f}")
        for term, (value, grad) in term_gradients(loss, image, photo).items():
            kind, layer = term.split()
            weight = {"content": cfg.loss.content_weight, "tv": cfg.loss.tv_weight}.get(kind)
            if weight is None:
                weight = style_weight * loss.style_layer_weights[layer]
            norm = grad.norm().item()
            print(
                f"{'':<16} {term:<16} {value:9.3g} {norm:9.3g} {weight:9.3g} {weight * norm:9.3g} "
                f"{artifact_share(grad):6.3f}"
            )


if __name__ == "__main__":
    launch("loss_gradients", main, config_schema=LossGradientsConfig)
