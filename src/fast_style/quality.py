"""Image-quality figures for stylized photos: what ``scripts/evaluate.py`` reports.

Every function takes RGB images ``(3, H, W)`` (or ``(1, 3, H, W)``) float in [0, 1] and returns
plain floats. None of them is a training loss, on purpose: a figure the loss optimizes says little
about what a person sees. Conventions (each "higher is better" or "lower is better"):

- ``style_gain`` (higher): per VGG style layer, ``1 - |G(out) - G(style)|^2 / |G(photo) - G(style)|^2``,
  Grams normalized by C*H*W. 0 = no closer to the painting than the photo itself, 1 = the
  painting's statistics exactly. The mean over layers is the headline figure.
- ``content_error`` (lower): relative error of the content-layer features,
  ``|phi(out) - phi(photo)|^2 / |phi(photo)|^2``.
- ``structure`` (higher): Pearson correlation of the Sobel edge magnitudes of output and photo
  (luminance). The loss never sees it: it tells whether windows, edges and faces survive.
- ``artifact_share`` (lower, compare with the photo's own): the share of the luminance power
  spectrum (Hann window, DC removed) at periods of 4 px or less, at the image's native size. Fine
  dot and stripe textures (checkerboards, 2-4 px noise from over-weighted shallow Gram layers)
  put power there; natural photos and painted strokes put little (typically 0.005-0.02).
- ``palette_distance`` (lower): sliced Wasserstein-1 distance between the RGB colours of the
  image and of the painting (0-1 scale), averaged over fixed random directions.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LUMA = (0.299, 0.587, 0.114)
ARTIFACT_PERIOD = 4.0  # pixels: spectrum at periods <= this counts as artifact texture
PALETTE_DIRECTIONS = 64
PALETTE_SAMPLES = 4096
PALETTE_PIXELS = 1 << 16


def _chw(image: torch.Tensor) -> torch.Tensor:
    image = image[0] if image.dim() == 4 else image
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"expected an RGB image (3, H, W), got {tuple(image.shape)}")
    return image.float()


def luminance(image: torch.Tensor) -> torch.Tensor:
    """``(3, H, W)`` RGB in [0, 1] -> ``(H, W)`` luma (ITU-R BT.601 weights)."""
    image = _chw(image)
    return torch.einsum("chw,c->hw", image, image.new_tensor(LUMA))


def artifact_share(image: torch.Tensor, period: float = ARTIFACT_PERIOD) -> float:
    """Share of the luminance spectrum's power at periods <= ``period`` px (DC excluded)."""
    y = luminance(image).double()
    h, w = y.shape
    if h < 8 or w < 8:
        return float("nan")
    window = torch.outer(torch.hann_window(h, periodic=False, dtype=y.dtype), torch.hann_window(w, dtype=y.dtype))
    y = (y - y.mean()) * window
    power = torch.fft.rfft2(y).abs().square()
    fy = torch.fft.fftfreq(h, dtype=y.dtype).abs()[:, None]
    fx = torch.fft.rfftfreq(w, dtype=y.dtype)[None, :]
    radius = torch.sqrt(fy.square() + fx.square())
    # rfft2 stores the non-negative x frequencies once; the others are mirror images with the same
    # power, so the columns 1..W/2-1 count twice in the full spectrum.
    weight = torch.full_like(fx, 2.0)
    weight[0, 0] = 1.0
    if w % 2 == 0:
        weight[0, -1] = 1.0
    power = power * weight
    power[0, 0] = 0.0
    total = power.sum()
    if total <= 0:
        return 0.0
    return float(power[radius >= 1.0 / period].sum() / total)


def _sobel_magnitude(y: torch.Tensor) -> torch.Tensor:
    kx = y.new_tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    kernels = torch.stack([kx, kx.t()])[:, None]
    grads = F.conv2d(F.pad(y[None, None], (1, 1, 1, 1), mode="replicate"), kernels)[0]
    return grads.square().sum(0).sqrt()


def structure_kept(output: torch.Tensor, photo: torch.Tensor) -> float:
    """Pearson correlation of the Sobel edge magnitudes of ``output`` and ``photo`` (same size)."""
    a, b = _sobel_magnitude(luminance(output)), _sobel_magnitude(luminance(photo))
    if a.shape != b.shape:
        raise ValueError(f"output {tuple(a.shape)} and photo {tuple(b.shape)} differ in size")
    a, b = a.flatten() - a.mean(), b.flatten() - b.mean()
    denominator = a.norm() * b.norm()
    return float((a @ b) / denominator) if denominator > 0 else 0.0


def palette_distance(image: torch.Tensor, painting: torch.Tensor, seed: int = 0) -> float:
    """Sliced Wasserstein-1 distance between the RGB colour distributions of two images."""
    generator = torch.Generator().manual_seed(seed)
    directions = F.normalize(torch.randn(PALETTE_DIRECTIONS, 3, generator=generator, dtype=torch.float64), dim=1)
    quantiles = (torch.arange(PALETTE_SAMPLES, dtype=torch.float64) + 0.5) / PALETTE_SAMPLES

    def projected_quantiles(x: torch.Tensor) -> torch.Tensor:
        colours = _chw(x).reshape(3, -1).t()  # (N, 3)
        if len(colours) > PALETTE_PIXELS:  # a random subset of a large image is plenty
            colours = colours[torch.randperm(len(colours), generator=generator)[:PALETTE_PIXELS]]
        projected = (colours.double() @ directions.t()).sort(dim=0).values  # (N, directions)
        return projected[(quantiles * len(projected)).long().clamp_max(len(projected) - 1)]  # (samples, directions)

    return float((projected_quantiles(image) - projected_quantiles(painting)).abs().mean())


def style_gain_per_layer(
    output_grams: dict[str, torch.Tensor], photo_grams: dict[str, torch.Tensor], style_grams: dict[str, torch.Tensor]
) -> dict[str, float]:
    """``{layer: 1 - |G_out - G_style|^2 / |G_photo - G_style|^2}`` for each style layer."""
    gains = {}
    for name, target in style_grams.items():
        before = (photo_grams[name] - target).square().sum()
        after = (output_grams[name] - target).square().sum()
        gains[name] = float(1.0 - after / before) if before > 0 else 0.0
    return gains


def relative_error(output: torch.Tensor, target: torch.Tensor) -> float:
    """``|output - target|^2 / |target|^2`` in fp32/fp64."""
    denominator = target.double().square().sum()
    return float((output.double() - target.double()).square().sum() / denominator) if denominator > 0 else math.nan
