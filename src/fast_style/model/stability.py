"""Stability training: the stylized photo should move with the photo, not repaint itself.

Feed-forward style nets flicker on video because a sub-pixel camera move or sensor noise changes
their brush strokes. Following the single-photo regularizers of Gupta et al. 2017 and the compound
regularization of Wang et al. 2020 (no video, no optical-flow network), each training batch gets a
random small, smooth motion ``W`` (shift, rotation, zoom and a smooth random flow) and a little
Gaussian noise ``n``, and the term

    stability = mean |W(f(x)) - f(W(x) + n)|   over the pixels W keeps inside the frame

asks the net ``f`` to commute with the motion and to ignore the noise.

Warps are described by where each output pixel samples its input: ``positions`` ``(B, H, W, 2)``
holding ``(x, y)`` in input pixel coordinates (pixel centres at integers, ``0..W-1``, ``0..H-1``).
``warp`` resamples with ``grid_sample`` (``align_corners=True``, so integer positions hit pixel
centres and integer shifts copy pixels exactly, up to float rounding) and returns the mask of
output pixels whose bilinear footprint lies wholly inside the input frame.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# Coarse grid of the random flow: a 4x4 lattice of random displacements, upsampled bicubically, is
# smooth at any training size (one bend per quarter of the frame, like a slow parallax).
FLOW_GRID = 4
# Sample positions this close outside the frame still count as inside: float rounding of an exact
# border position must not drop a whole row.
EDGE_TOLERANCE = 1e-3


def identity_positions(batch: int, height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """``(batch, height, width, 2)`` positions where every pixel samples itself."""
    ys = torch.arange(height, device=device, dtype=dtype)
    xs = torch.arange(width, device=device, dtype=dtype)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y], dim=-1).expand(batch, height, width, 2)


def affine_positions(
    batch_angle: torch.Tensor,
    batch_scale: torch.Tensor,
    batch_shift: torch.Tensor,
    height: int,
    width: int,
) -> torch.Tensor:
    """Positions of a rotation + zoom about the frame centre, then a shift.

    ``batch_angle`` ``(B,)`` radians, ``batch_scale`` ``(B,)`` (1 = no zoom; > 1 samples a larger
    area, i.e. zooms out), ``batch_shift`` ``(B, 2)`` pixels ``(dx, dy)``: output pixel ``p`` samples
    the input at ``centre + scale * R(angle) (p - centre) + shift``. Returns ``(B, H, W, 2)``.
    """
    dtype, device = batch_shift.dtype, batch_shift.device
    base = identity_positions(1, height, width, device, dtype)[0]  # (H, W, 2)
    centre = torch.tensor([(width - 1) / 2, (height - 1) / 2], device=device, dtype=dtype)
    rel = base - centre
    cos, sin = torch.cos(batch_angle), torch.sin(batch_angle)
    # (B, 2, 2) rotation-and-zoom matrices acting on (x, y) column vectors.
    matrix = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2) * batch_scale[:, None, None]
    moved = torch.einsum("bij,hwj->bhwi", matrix, rel)
    return moved + centre + batch_shift[:, None, None, :]


def warp(
    images: torch.Tensor, positions: torch.Tensor, mode: str = "bilinear", padding: str = "reflection"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Resample ``images`` ``(B, C, H, W)`` at ``positions`` ``(B, H', W', 2)`` (input pixel coordinates).

    Returns ``(warped (B, C, H', W'), valid (B, 1, H', W') bool)``: ``valid`` marks the output pixels
    whose sample position lies inside ``[0, W-1] x [0, H-1]``, i.e. whose value comes from the frame
    only; elsewhere ``padding`` (``grid_sample``'s ``reflection``, ``border`` or ``zeros``) fills in.
    Values keep their range (bicubic ``mode`` may overshoot slightly). Runs in the images' dtype
    (fp32 or fp64; a reduced-precision input is resampled in fp32).
    """
    height, width = images.shape[-2:]
    work = images if images.dtype in (torch.float32, torch.float64) else images.float()
    positions = positions.to(work.dtype)
    # align_corners=True: -1 and 1 are the centres of the first and last pixels.
    scale = positions.new_tensor([2.0 / max(width - 1, 1), 2.0 / max(height - 1, 1)])
    grid = positions * scale - 1.0
    warped = F.grid_sample(work, grid, mode=mode, padding_mode=padding, align_corners=True)
    x, y = positions[..., 0], positions[..., 1]
    valid = (
        (x >= -EDGE_TOLERANCE)
        & (x <= width - 1 + EDGE_TOLERANCE)
        & (y >= -EDGE_TOLERANCE)
        & (y <= height - 1 + EDGE_TOLERANCE)
    )
    return warped, valid[:, None]


def smooth_flow(batch: int, height: int, width: int, amplitude: float, device=None, generator=None) -> torch.Tensor:
    """A smooth random displacement field ``(batch, height, width, 2)`` in pixels, each value in
    ``[-amplitude, amplitude]``: uniform random values on a ``FLOW_GRID`` lattice, upsampled."""
    coarse = torch.rand(batch, 2, FLOW_GRID, FLOW_GRID, device=device, generator=generator) * 2 - 1
    fine = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=True)
    return (fine.clamp(-1, 1) * amplitude).permute(0, 2, 3, 1)


def random_positions(
    batch: int,
    height: int,
    width: int,
    shift: float,
    rotation: float,
    zoom: float,
    flow: float,
    device=None,
    generator=None,
) -> torch.Tensor:
    """A random smooth motion per image: ``(batch, height, width, 2)`` sample positions.

    Each image gets a shift uniform in ``[-shift, shift]`` pixels per axis (sub-pixel included), a
    rotation uniform in ``[-rotation, rotation]`` degrees and a zoom factor uniform in
    ``[1 - zoom, 1 + zoom]`` about the centre, plus ``smooth_flow`` of amplitude ``flow`` pixels.
    """

    def uniform(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, device=device, generator=generator) * 2 - 1

    angle = uniform(batch) * math.radians(rotation)
    scale = 1 + uniform(batch) * zoom
    offset = uniform(batch, 2) * shift
    positions = affine_positions(angle, scale, offset, height, width)
    if flow > 0:
        positions = positions + smooth_flow(batch, height, width, flow, device, generator)
    return positions


def masked_l1(a: torch.Tensor, b: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of ``a`` and ``b`` ``(B, C, H, W)`` over the pixels where ``valid``
    ``(B, 1, H, W)`` is true, all channels counted: an fp32 (or fp64) scalar, 0 if none is valid."""
    weight = valid.to(a.dtype)
    total = ((a - b).abs() * weight).sum()
    return total / (weight.sum() * a.shape[1]).clamp_min(1.0)


class StabilityLoss(nn.Module):
    """The stability term and the perturbed inputs it needs (no parameters, nothing checkpointed).

    Use per batch: ``moved, positions = perturb(photos)``; run the net on ``photos`` and ``moved``
    (one batch of both is fastest); then ``forward(stylized, stylized_moved, positions)``.

    Args:
        weight: multiplies the term (``loss.stability_weight``).
        shift, rotation, zoom, flow: motion strengths (pixels at the training size, degrees, zoom
            fraction, flow amplitude in pixels); see ``random_positions``.
        noise: standard deviation of the Gaussian noise added to the moved photo ([0, 1] scale).
        detach: treat ``W(f(x))`` as a fixed target, so only ``f(W(x) + n)`` gets the term's
            gradient. Both branches pulled toward each other meet half-way, on an output with fewer
            strokes than the style loss asks of ``f(x)``; with the target fixed, ``f(x)`` answers to
            the style loss alone and the moved copy has to reproduce its strokes.
        interpolation: ``grid_sample`` mode of both warps, ``bilinear`` or ``bicubic``. A sub-pixel
            bilinear warp is also a blur (a half-pixel shift averages two neighbours), so the term
            compares the net's strokes with a softened copy of themselves and rewards fewer,
            smoother strokes even from a net that moves them perfectly; bicubic softens much less.
    """

    def __init__(
        self,
        weight: float,
        shift: float = 2.0,
        rotation: float = 1.0,
        zoom: float = 0.02,
        flow: float = 1.0,
        noise: float = 0.02,
        detach: bool = False,
        interpolation: str = "bilinear",
    ) -> None:
        super().__init__()
        if interpolation not in ("bilinear", "bicubic"):
            raise ValueError(f"interpolation must be bilinear or bicubic, got {interpolation!r}")
        self.detach, self.interpolation = detach, interpolation
        self.weight, self.shift, self.rotation, self.zoom, self.flow, self.noise = (
            weight,
            shift,
            rotation,
            zoom,
            flow,
            noise,
        )

    @torch.no_grad()
    def perturb(self, photos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, 3, H, W)`` photos in [0, 1] -> ``(W(photos) + n clamped to [0, 1], positions)``.

        Outside the frame the moved photo is reflected, so the net sees a natural image everywhere
        (a black border would shift its instance-norm statistics); those pixels are masked out of
        the term. Random numbers come from torch's global generator on the photos' device, which
        Lightning seeds per rank and the RNG callback restores on resume.
        """
        batch, _, height, width = photos.shape
        positions = random_positions(
            batch, height, width, self.shift, self.rotation, self.zoom, self.flow, device=photos.device
        )
        moved, _ = warp(photos.float(), positions, mode=self.interpolation)
        if self.noise > 0:
            moved = moved + torch.randn_like(moved) * self.noise
        moved = moved.clamp_(0.0, 1.0).to(photos.dtype)
        if photos.is_contiguous(memory_format=torch.channels_last):
            moved = moved.contiguous(memory_format=torch.channels_last)
        return moved, positions

    def forward(self, stylized: torch.Tensor, stylized_moved: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Weighted ``mean |W(f(x)) - f(W(x) + n)|`` over valid pixels: an fp32 scalar.

        ``stylized`` = f(x) and ``stylized_moved`` = f(W(x) + n), both ``(B, 3, H, W)`` (any float
        dtype, unclamped [0, 1] scale); ``positions`` the ``W`` that ``perturb`` returned.
        """
        with torch.autocast(device_type=stylized.device.type, enabled=False):
            target = stylized.detach() if self.detach else stylized
            moved_output, valid = warp(target.float(), positions, mode=self.interpolation)
            return self.weight * masked_l1(moved_output, stylized_moved.float(), valid)


def stability_from_config(loss_cfg) -> StabilityLoss | None:
    """The term a validated ``loss`` config asks for, or None when ``loss.stability_weight`` is 0."""
    weight = float(loss_cfg.get("stability_weight", 0.0) or 0.0)
    if weight == 0:
        return None
    return StabilityLoss(
        weight,
        shift=float(loss_cfg.stability_shift),
        rotation=float(loss_cfg.stability_rotation),
        zoom=float(loss_cfg.stability_zoom),
        flow=float(loss_cfg.stability_flow),
        noise=float(loss_cfg.stability_noise),
        detach=bool(loss_cfg.get("stability_detach", False)),
        interpolation=str(loss_cfg.get("stability_interpolation", "bilinear")).lower(),
    )
