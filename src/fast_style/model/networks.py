"""The feed-forward transformer net of Johnson, Alahi & Fei-Fei (2016).

Changes from the paper, all standard by now:
- instance norm (Ulyanov et al. 2016) instead of batch norm: far better stylization;
- nearest-neighbour upsampling followed by a convolution instead of transposed convolutions:
  no checkerboard artifacts (Odena et al. 2016);
- reflection padding everywhere instead of zeros: no dark or bright frame at the borders.

Plain ``torch.nn`` layers only. Training and ``stylize.py`` swap in CPU fast versions of three of
them (same parameters, same state-dict keys): see ``fast_style.model.cpu_kernels``.

Tensor contract: ``TransformerNet`` takes RGB images ``(B, 3, H, W)`` on the [0, 1] scale and
returns ``(B, 3, H, W)`` on the same scale *unclamped* (training sees the raw values; the
stylizers in ``fast_style.infer`` clamp). Any H, W >= 5 works, odd sizes included: the input is
padded to a multiple of 4 for the two stride-2 stages and the output is cropped back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvNormAct(nn.Sequential):
    """Reflection pad -> conv -> instance norm -> ReLU (norm and ReLU optional)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        norm: bool = True,
        relu: bool = True,
    ) -> None:
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(kernel_size // 2),
            # A bias before instance norm is subtracted right away with the mean: leave it out
            # (its gradient is zero, so it would only collect rounding noise).
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, bias=not norm),
        ]
        if norm:
            layers.append(nn.InstanceNorm2d(out_channels, affine=True))
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class ResidualBlock(nn.Module):
    """Two 3x3 conv + norm layers with an identity shortcut (no ReLU after the sum)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            ConvNormAct(channels, channels, 3),
            ConvNormAct(channels, channels, 3, relu=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class UpsampleConv(nn.Sequential):
    """Nearest x2 upsample then a stride-1 ConvNormAct (instead of a transposed conv)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__(
            nn.Upsample(scale_factor=2, mode="nearest"),
            ConvNormAct(in_channels, out_channels, kernel_size),
        )


class TransformerNet(nn.Module):
    """Image transformation network.

    Args:
        channels: width of the first stage; the two downsampled stages use 2x and 4x this
            (paper: 32 -> 64 -> 128).
        residual_blocks: number of residual blocks at 1/4 resolution (paper: 5).
    """

    def __init__(self, channels: int = 32, residual_blocks: int = 5) -> None:
        super().__init__()
        if channels < 1 or residual_blocks < 0:
            raise ValueError(f"channels must be >= 1 and residual_blocks >= 0, got {channels}, {residual_blocks}")
        self.config = {"channels": int(channels), "residual_blocks": int(residual_blocks)}
        c = channels
        self.encoder = nn.Sequential(
            ConvNormAct(3, c, 9),
            ConvNormAct(c, 2 * c, 3, stride=2),
            ConvNormAct(2 * c, 4 * c, 3, stride=2),
        )
        self.residuals = nn.Sequential(*(ResidualBlock(4 * c) for _ in range(residual_blocks)))
        self.decoder = nn.Sequential(
            UpsampleConv(4 * c, 2 * c),
            UpsampleConv(2 * c, c),
            ConvNormAct(c, 3, 9, norm=False, relu=False),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` in [0, 1] -> ``(B, 3, H, W)`` on the [0, 1] scale, unclamped."""
        height, width = images.shape[-2:]
        # Two stride-2 stages: pad to a multiple of 4 so the decoder lands on the input size.
        # Replicate (not reflect) so that even 1-3 pixels of padding never exceed the image.
        pad_h, pad_w = (-height) % 4, (-width) % 4
        # Always pad (possibly by 0): no shape-dependent branch, so exports stay dynamic.
        x = F.pad(images, (0, pad_w, 0, pad_h), mode="replicate")
        y = self.decoder(self.residuals(self.encoder(x)))
        return y[..., :height, :width]
