"""Does training make art? A short CPU run with the stand-in VGG16 must move held-out photos
clearly towards the style while keeping their content.

Measured on held-out photos (never trained on), resized to 128 px on the longer side, with the
same perceptual loss (stand-in VGG, Starry Night, style at 256 px) that trained the net:
- style: the Gram distance (the default loss definition) of the stylized photo must fall below
  1/STYLE_FACTOR of the photo's own;
- content: the relative relu2_2 error between stylized photo and photo must stay below
  CONTENT_FRACTION of the error between the photo and an unrelated photo (content is kept).
Thresholds come from measurements; see the comment at the constants.
"""

import pytest
import torch
import torch.nn.functional as F

from fast_style.images import load_image
from fast_style.infer.stylizer import load_stylizer
from fast_style.model.perceptual import PerceptualLoss
from fast_style.quality import artifact_share
from fast_style.train.styles import load_style_image
from fast_style.train.training import train

from .conftest import STAND_IN_LOSS, compose_train, cpu_has_native_bf16, tiny_train_overrides

STEPS = 200
# Measured at 200 steps (128 px, batch 4, bf16, 2 CPU cores): the style distance of the held-out
# cat fell 5251 -> 1658 (3.2x) and its content error was 2.04 against 4.11 for an unrelated photo
# (0.50). The thresholds leave room for run-to-run noise and still fail for an untrained net
# (style unchanged) or one that paints the style over the photo (content error near 1x).
STYLE_FACTOR = 2.5
CONTENT_FRACTION = 0.75
ARTIFACT_FACTOR = 2.0


def resize_longer(image: torch.Tensor, size: int) -> torch.Tensor:
    h, w = image.shape[-2:]
    scale = size / max(h, w)
    return F.interpolate(image[None], size=(round(h * scale), round(w * scale)), mode="bicubic", antialias=True).clamp(
        0, 1
    )


@pytest.mark.slow
@pytest.mark.skipif(
    not cpu_has_native_bf16(),
    reason="calibrated on bf16 training; this CPU has no bf16 instructions (emulated bf16: hours for 200 steps)",
)
def test_short_training_moves_held_out_photos_towards_the_style(
    photos_dir, held_out_photos, tmp_path, stand_in_vgg, needs_styles
):
    overrides = tiny_train_overrides(photos_dir, weights=str(stand_in_vgg), steps=STEPS, size=128)
    overrides += [
        *STAND_IN_LOSS,
        "data.batch_size=4",
        "style.size=256",
        "samples.count=0",
        "trainer.precision=bf16-mixed",
    ]
    cfg = compose_train(overrides, tmp_path / "run")
    train(cfg)
    stylizer = load_stylizer(tmp_path / "run" / "final.ckpt")
    torch.manual_seed(0)
    # Style is measured with the product's default (published) definition; content with the
    # normalized relative error, which does not depend on the stand-in's activation scale.
    style_loss = PerceptualLoss(load_style_image(cfg.style), weights=str(stand_in_vgg))
    loss = PerceptualLoss(load_style_image(cfg.style), weights=str(stand_in_vgg), normalize=True)
    photos = [resize_longer(load_image(p), 128) for p in held_out_photos]
    unrelated = resize_longer(load_image(sorted(photos_dir.iterdir())[0]), 128)
    for photo in photos:
        with torch.no_grad():
            stylized = stylizer(photo)
            content_layer = loss.content_layers[0]
            features = {
                name: loss.vgg(x, [content_layer])[content_layer]
                for name, x in [("photo", photo), ("stylized", stylized)]
            }
            other = loss.vgg(F.interpolate(unrelated, size=photo.shape[-2:], mode="bilinear"), [content_layer])[
                content_layer
            ]
            content_kept = loss.content_error(features["stylized"], features["photo"]).item()
            content_unrelated = loss.content_error(other, features["photo"]).item()
            style_before = style_loss.style_distance(photo).item()
            style_after = style_loss.style_distance(stylized).item()
        print(
            f"style {style_before:.4g} -> {style_after:.4g} ({style_before / style_after:.1f}x); "
            f"content distance {content_kept:.4g} vs unrelated photo {content_unrelated:.4g}"
        )
        assert style_after * STYLE_FACTOR < style_before
        assert content_kept < CONTENT_FRACTION * content_unrelated
        # No dot-and-stripe texture (docs/quality.md): the output's share of 2-4 px periods stays
        # within ARTIFACT_FACTOR of the photo's own (1200 fp32 steps of loss=standin: 0.6x).
        assert artifact_share(stylized[0]) <= ARTIFACT_FACTOR * artifact_share(photo[0])
