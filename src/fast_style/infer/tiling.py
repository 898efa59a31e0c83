"""Stylizing images too large for memory: overlapping tiles with frozen instance-norm statistics.

Why not plain tiles: every instance norm normalizes with the mean and variance of the *whole*
feature map, so a tile run on its own normalizes with its own statistics and comes out brighter,
darker or differently textured than its neighbour. Here the statistics are measured once on the
whole image (or, when it is too large, on a downscaled proxy of it) and every tile is then run with
those statistics frozen. With frozen statistics the network is a plain convolutional network with a
bounded receptive field, so a tile that carries ``context`` extra pixels on each side reproduces the
untiled output exactly in its interior; neighbouring tiles overlap by ``2 * blend`` pixels and are
cross-faded with linear ramps that sum to one, so any residual difference is feathered, never a step.

Tensor contract: images ``(3, H, W)`` float in [0, 1]; outputs the same size in [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from fast_style.model.networks import TransformerNet

# Stride of the network: tiles start on multiples of it so their downsampling grid matches the
# untiled run's (the Stylizer's replicate margin of 8 is itself a multiple of 4).
ALIGN = 4
# Statistics are measured on the whole image up to this many pixels, above it on a downscaled
# copy of this size: 1 MP keeps the Johnson net's largest activation near 128 MB in fp32, so an
# 8K photo (whose input and output buffers alone take ~1 GB) stays well under 4 GB.
STATS_PIXELS = 1_048_576
# tile=auto tiles images above this many pixels (a 1080p video frame stays in one piece).
AUTO_TILE_PIXELS = 4_194_304
AUTO_TILE = 1024
BLEND = 32


def context_pixels(net: TransformerNet) -> int:
    """Receptive-field radius of ``net`` in input pixels, rounded up to a multiple of ``ALIGN``.

    9x9 conv (4) + stride-2 3x3 (1) + stride-2 3x3 at 1/2 (2) + two 3x3 per residual block at 1/4
    (8 each) + nearest upsample and 3x3 at 1/2 (4) + 3x3 at 1/1 (1) + 9x9 (4), plus 8 spare
    pixels for the reflection padding at tile borders. An anti-aliased net's blurs (one pixel at
    1/1 and at 1/2) and bilinear upsamples (one pixel at 1/4 and at 1/2) add 1 + 2 + 4 + 2.
    """
    radius = 4 + 1 + 2 + 8 * net.config["residual_blocks"] + 4 + 1 + 4 + 8
    if net.config.get("antialias", False):
        radius += 1 + 2 + 4 + 2
    return ALIGN * math.ceil(radius / ALIGN)


@contextmanager
def frozen_instance_norm(module: nn.Module, stats: list[tuple[torch.Tensor, torch.Tensor]] | None = None):
    """Within the block, instance norms of ``module`` either record or replay their statistics.

    ``stats=None``: every ``InstanceNorm2d`` normalizes as usual and appends the per-channel
    ``(mean, var)`` of its input (each ``(C,)`` float32, batch of one) to the yielded list.
    ``stats=list``: the norms use those statistics instead of their input's, in module order.
    """
    norms = [m for m in module.modules() if isinstance(m, nn.InstanceNorm2d)]
    recorded: list[tuple[torch.Tensor, torch.Tensor]] = []
    if stats is not None and len(stats) != len(norms):
        raise ValueError(f"{len(stats)} statistics for {len(norms)} instance norms")

    def make_forward(index: int, norm: nn.InstanceNorm2d) -> Callable[[torch.Tensor], torch.Tensor]:
        def forward(x: torch.Tensor) -> torch.Tensor:
            if stats is None:
                if x.shape[0] != 1:
                    raise ValueError("statistics are recorded one image at a time")
                var, mean = torch.var_mean(x.float(), dim=(2, 3), unbiased=False)
                recorded.append((mean[0], var[0]))
            else:
                mean, var = stats[index]
                mean, var = mean[None], var[None]
            # Fold the normalization and the affine transform into one scale and shift.
            scale = torch.rsqrt(var.to(x.device) + norm.eps) * norm.weight.float()
            shift = norm.bias.float() - mean.to(x.device) * scale
            # One fused op: no full-size temporary besides the output.
            return torch.addcmul(shift.to(x.dtype)[..., None, None], x, scale.to(x.dtype)[..., None, None])

        return forward

    for index, norm in enumerate(norms):
        norm.forward = make_forward(index, norm)  # instance attribute shadows the class method
    try:
        yield recorded
    finally:
        for norm in norms:
            del norm.forward


def measure_statistics(
    run: Callable[[torch.Tensor], torch.Tensor],
    stylizer: nn.Module,
    image: torch.Tensor,
    max_pixels: int = STATS_PIXELS,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Instance-norm statistics of ``image`` ``(3, H, W)``: exact up to ``max_pixels``, else from
    a downscaled (area-averaged) proxy of the whole image."""
    height, width = image.shape[-2:]
    proxy = image[None]
    if height * width > max_pixels:
        factor = math.sqrt(max_pixels / (height * width))
        size = (max(1, int(height * factor)), max(1, int(width * factor)))
        proxy = F.interpolate(proxy, size=size, mode="area")
    with frozen_instance_norm(stylizer) as recorded:
        run(proxy)
    return recorded


def tile_spans(length: int, tile: int, blend: int, context: int) -> list[tuple[int, int, int, int]]:
    """Split ``[0, length)`` into tiles: ``(core_start, core_end, in_start, in_end)`` each.

    Cores partition the axis in steps of ``tile`` (a multiple of ``ALIGN``); each tile's input is
    its core widened by ``blend + context`` on both sides, clipped, with an aligned start.
    """
    spans = []
    for start in range(0, length, tile):
        end = min(start + tile, length)
        in_start = max(0, start - blend - context) // ALIGN * ALIGN
        in_end = min(length, end + blend + context)
        spans.append((start, end, in_start, in_end))
    return spans


def ramp_weights(offset: int, length: int, core_start: int, core_end: int, total: int, blend: int) -> torch.Tensor:
    """1-D feathering weights ``(length,)`` for the output pixels ``[offset, offset + length)`` of
    the tile whose core is ``[core_start, core_end)`` on an axis of ``total`` pixels.

    A linear ramp of width ``2 * blend`` is centred on each interior core boundary; the ramps of
    two neighbours are mirror images, so the weights of all tiles sum to exactly one everywhere.
    """
    x = torch.arange(offset, offset + length, dtype=torch.float32) + 0.5
    width = max(2 * blend, 1)  # blend=0: a hard edge at the boundary

    def rising(boundary: int) -> torch.Tensor:
        return ((x - (boundary - blend)) / width).clamp(0, 1) if blend else (x >= boundary).float()

    weight = torch.ones(length)
    if core_start > 0:
        weight = weight * rising(core_start)
    if core_end < total:
        weight = weight * (1 - rising(core_end))
    return weight


def stylize_tiled(
    run: Callable[[torch.Tensor], torch.Tensor],
    stylizer: nn.Module,
    image: torch.Tensor,
    tile: int,
    blend: int = BLEND,
    stats_pixels: int = STATS_PIXELS,
    progress: Callable[[Iterator], Iterator] | None = None,
) -> torch.Tensor:
    """Stylize ``image`` ``(3, H, W)`` in [0, 1] tile by tile; returns ``(3, H, W)`` in [0, 1].

    ``run`` maps a ``(1, 3, h, w)`` batch through ``stylizer`` (device, precision) and returns it on
    the CPU; ``stylizer`` is the module whose instance norms are frozen. Peak memory is the image,
    the output and one tile's activations (or the statistics proxy's, whichever is larger).
    """
    height, width = image.shape[-2:]
    net = stylizer.net if hasattr(stylizer, "net") else stylizer
    context = context_pixels(net)
    tile = max(ALIGN, tile // ALIGN * ALIGN)
    blend = min(blend, tile // 2)
    stats = measure_statistics(run, stylizer, image, stats_pixels)
    output = torch.zeros(3, height, width)
    rows = tile_spans(height, tile, blend, context)
    cols = tile_spans(width, tile, blend, context)
    jobs = [(r, c) for r in rows for c in cols]
    with frozen_instance_norm(stylizer, stats):
        for (y0, y1, iy0, iy1), (x0, x1, ix0, ix1) in progress(jobs) if progress else jobs:
            styled = run(image[None, :, iy0:iy1, ix0:ix1])[0].float()
            # Keep the core widened by the blend band; the context ring is discarded.
            oy0, oy1 = max(0, y0 - blend), min(height, y1 + blend)
            ox0, ox1 = max(0, x0 - blend), min(width, x1 + blend)
            part = styled[:, oy0 - iy0 : oy1 - iy0, ox0 - ix0 : ox1 - ix0]
            wy = ramp_weights(oy0, oy1 - oy0, y0, y1, height, blend)
            wx = ramp_weights(ox0, ox1 - ox0, x0, x1, width, blend)
            output[:, oy0:oy1, ox0:ox1].addcmul_(part, wy[:, None] * wx[None, :])
    return output.clamp_(0.0, 1.0)
