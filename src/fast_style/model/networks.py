"""The feed-forward transformer net of Johnson, Alahi & Fei-Fei (2016).

Changes from the paper, all standard by now:
- instance norm (Ulyanov et al. 2016) instead of batch norm: far better stylization;
- nearest-neighbour upsampling followed by a convolution instead of transposed convolutions:
  no checkerboard artifacts (Odena et al. 2016);
- reflection padding everywhere instead of zeros: no dark or bright frame at the borders.

``antialias=True`` (off by default) low-passes before each stride-2 convolution and upsamples
bilinearly instead of nearest (Zhang 2019, "Making Convolutional Networks Shift-Invariant Again"):
a stride-2 stage aliases every detail finer than two pixels, so a sub-pixel move of the photo
repaints the strokes instead of moving them, which is what makes a stylized video flicker
(docs/video.md). Same parameters and state-dict keys as the plain net.

Plain ``torch.nn`` layers only. Training and ``stylize.py`` swap in CPU fast versions of three of
them (same parameters, same state-dict keys): see ``fast_style.model.cpu_kernels``.

Tensor contract: ``TransformerNet`` takes RGB images ``(B, 3, H, W)`` on the [0, 1] scale and
returns ``(B, 3, H, W)`` on the same scale *unclamped* (training sees the raw values; the
stylizers in ``fast_style.infer`` clamp). Any H, W >= 5 works, odd sizes included: the input is
padded to a multiple of 4 for the two stride-2 stages and the output is cropped back.

Several styles in one network (Dumoulin, Shlens & Kudlur 2017, conditional instance norm):
``TransformerNet(num_styles=S)`` with S > 1 gives every normalization layer one scale and shift
per style (``ConditionalInstanceNorm2d``, parameters ``(S, C)`` under the same state-dict keys as
the ``(C,)`` ones of a single-style net) and takes ``style_weights`` ``(B, S)``: each sample's
scales and shifts are ``style_weights @ weight``, so a one-hot row is one style and a convex row
blends them. S = 1 is today's network, module for module, so its checkpoints load unchanged.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


class ConditionalInstanceNorm2d(nn.Module):
    """Instance norm with one affine scale and shift per style.

    ``weight``, ``bias``: ``(S, C)``. ``forward(x, style_weights)``: ``x`` ``(B, C, H, W)``,
    ``style_weights`` ``(B, S)`` float (rows summing to 1: one-hot = one style) -> ``(B, C, H, W)``.
    Blending mixes the parameters, not the outputs (Dumoulin et al.): a blend is itself a
    single-style net, which is what ``TransformerNet.baked`` returns.
    """

    def __init__(self, num_features: int, num_styles: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features, self.num_styles, self.eps = num_features, num_styles, eps
        self.takes_style = True  # see StyledSequential
        self.weight = nn.Parameter(torch.ones(num_styles, num_features))
        self.bias = nn.Parameter(torch.zeros(num_styles, num_features))

    def forward(self, x: torch.Tensor, style_weights: Optional[torch.Tensor] = None) -> torch.Tensor:  # noqa: UP045 (TorchScript)
        if style_weights is None:
            raise ValueError("a multi-style network needs style_weights (B, S)")
        weights = style_weights.to(self.weight.dtype)
        scale = torch.mm(weights, self.weight)[:, :, None, None].to(x.dtype)
        shift = torch.mm(weights, self.bias)[:, :, None, None].to(x.dtype)
        return F.instance_norm(x, eps=self.eps) * scale + shift


class StyledSequential(nn.Sequential):
    """``nn.Sequential`` that hands ``style_weights`` to the layers that take it (conditional
    norms and the blocks holding them); other layers get ``x`` alone. Same state-dict keys."""

    def __init__(self, *layers: nn.Module) -> None:
        super().__init__(*layers)
        self.takes_style = True  # marks the layers that take style_weights (see forward)

    def forward(self, x: torch.Tensor, style_weights: Optional[torch.Tensor] = None) -> torch.Tensor:  # noqa: UP045 (TorchScript)
        for layer in self:
            # A marker attribute, not isinstance: TorchScript resolves hasattr per unrolled layer,
            # while its isinstance on module classes does not match them.
            if hasattr(layer, "takes_style"):
                x = layer(x, style_weights)
            else:
                x = layer(x)
        return x


def _norm(channels: int, num_styles: int) -> nn.Module:
    # One style: the plain affine InstanceNorm2d (the CPU fast kernels and old checkpoints know it).
    if num_styles == 1:
        return nn.InstanceNorm2d(channels, affine=True)
    return ConditionalInstanceNorm2d(channels, num_styles)


class BlurReflectionPad2d(nn.Module):
    """Reflection pad by ``padding`` after a [1, 2, 1] x [1, 2, 1] / 16 blur of each channel.

    ``(B, C, H, W)`` -> ``(B, C, H + 2p, W + 2p)``. Stands where ``ConvNormAct``'s pad stands, so an
    anti-aliased stride-2 stage keeps the plain one's state-dict keys (the kernel is a fixed,
    unsaved buffer). The blur itself reflects at the borders: no dark frame.
    """

    def __init__(self, channels: int, padding: int) -> None:
        super().__init__()
        self.padding = padding
        taps = torch.tensor([1.0, 2.0, 1.0])
        kernel = (taps[:, None] * taps[None, :]) / 16.0
        self.register_buffer("kernel", kernel.expand(channels, 1, 3, 3).contiguous(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.padding + 1
        x = F.pad(x, (p, p, p, p), mode="reflect")
        return F.conv2d(x, self.kernel.to(x.dtype), groups=self.kernel.shape[0])


class ConvNormAct(StyledSequential):
    """Reflection pad -> conv -> instance norm -> ReLU (norm and ReLU optional).

    ``blur=True``: blur the input before the conv (``BlurReflectionPad2d``), for stride 2.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        norm: bool = True,
        relu: bool = True,
        num_styles: int = 1,
        blur: bool = False,
    ) -> None:
        pad = BlurReflectionPad2d(in_channels, kernel_size // 2) if blur else nn.ReflectionPad2d(kernel_size // 2)
        layers: list[nn.Module] = [
            pad,
            # A bias before instance norm is subtracted right away with the mean: leave it out
            # (its gradient is zero, so it would only collect rounding noise).
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, bias=not norm),
        ]
        if norm:
            layers.append(_norm(out_channels, num_styles))
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class ResidualBlock(nn.Module):
    """Two 3x3 conv + norm layers with an identity shortcut (no ReLU after the sum)."""

    def __init__(self, channels: int, num_styles: int = 1) -> None:
        super().__init__()
        self.takes_style = True  # see StyledSequential
        self.body = StyledSequential(
            ConvNormAct(channels, channels, 3, num_styles=num_styles),
            ConvNormAct(channels, channels, 3, relu=False, num_styles=num_styles),
        )

    def forward(self, x: torch.Tensor, style_weights: Optional[torch.Tensor] = None) -> torch.Tensor:  # noqa: UP045 (TorchScript)
        return x + self.body(x, style_weights)


class UpsampleConv(StyledSequential):
    """x2 upsample (nearest, or bilinear when ``smooth``) then a stride-1 ConvNormAct (instead of a
    transposed conv)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, num_styles: int = 1, smooth: bool = False
    ) -> None:
        upsample = (
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
            if smooth
            else nn.Upsample(scale_factor=2, mode="nearest")
        )
        super().__init__(
            upsample,
            ConvNormAct(in_channels, out_channels, kernel_size, num_styles=num_styles),
        )


# ``output=tanh``: out = 0.5 + OUTPUT_SCALE * tanh(y), the [0, 1] version of the bounded output of
# jcjohnson/fast-neural-style (150 * tanh, around the mean of 0-255 pixels) and
# lengstrom/fast-style-transfer (150 * tanh + 127.5). A linear output lets the net paint values far
# outside [0, 1] that the VGG loss rewards (large swings give large early-layer activations) but
# that clamping at display turns into dark dot-and-stripe texture; a bound a little beyond [0, 1]
# still reaches pure black and white without saturating tanh.
OUTPUT_SCALE = 150 / 255
OUTPUTS = ("linear", "tanh")
# What a config key means when a net leaves it out (TransformerNet.config keeps only non-defaults, so
# checkpoints and exports from before a key existed read the same).
OMITTED_DEFAULTS = {"num_styles": 1, "output": "linear", "antialias": False}


def full_config(config: dict) -> dict:
    """A net's saved ``config`` with every omitted key at the value it stands for."""
    return {**OMITTED_DEFAULTS, **config}


class TransformerNet(nn.Module):
    """Image transformation network.

    Args:
        channels: width of the first stage; the two downsampled stages use 2x and 4x this
            (paper: 32 -> 64 -> 128).
        residual_blocks: number of residual blocks at 1/4 resolution (paper: 5).
        num_styles: styles held by the normalization layers (1: the single-style net; more:
            conditional instance norm, ``forward`` then needs ``style_weights``).
        output: ``linear`` (pytorch/examples: the last conv's values, unbounded) or ``tanh``
            (``0.5 + OUTPUT_SCALE * tanh``: within [-0.09, 1.09], as jcjohnson's and lengstrom's nets).
        antialias: blur before the two stride-2 convs and upsample bilinearly (see the module
            docstring): strokes follow sub-pixel motion more closely, for video. Same parameters.
    """

    def __init__(
        self,
        channels: int = 32,
        residual_blocks: int = 5,
        num_styles: int = 1,
        output: str = "linear",
        antialias: bool = False,
    ) -> None:
        super().__init__()
        output = str(output).lower()
        if channels < 1 or residual_blocks < 0 or num_styles < 1 or output not in OUTPUTS:
            raise ValueError(
                f"channels and num_styles must be >= 1, residual_blocks >= 0 and output one of {OUTPUTS}, got "
                f"{channels}, {residual_blocks}, {num_styles}, {output!r}"
            )
        self.config = {"channels": int(channels), "residual_blocks": int(residual_blocks)}
        if num_styles > 1:  # single-style configs stay exactly as before (checkpoints, exports)
            self.config["num_styles"] = int(num_styles)
        if output != "linear":  # likewise: nets from before this option have no "output" key
            self.config["output"] = output
        if antialias:  # likewise
            self.config["antialias"] = True
        self.bounded = output == "tanh"
        self.output_scale = OUTPUT_SCALE  # an attribute: TorchScript cannot read module globals
        self.num_styles = int(num_styles)
        c, s = channels, num_styles
        self.encoder = StyledSequential(
            ConvNormAct(3, c, 9, num_styles=s),
            ConvNormAct(c, 2 * c, 3, stride=2, num_styles=s, blur=antialias),
            ConvNormAct(2 * c, 4 * c, 3, stride=2, num_styles=s, blur=antialias),
        )
        self.residuals = StyledSequential(*(ResidualBlock(4 * c, num_styles=s) for _ in range(residual_blocks)))
        self.decoder = StyledSequential(
            UpsampleConv(4 * c, 2 * c, num_styles=s, smooth=antialias),
            UpsampleConv(2 * c, c, num_styles=s, smooth=antialias),
            ConvNormAct(c, 3, 9, norm=False, relu=False),
        )

    def norm_parameter_names(self) -> list[str]:
        """State-dict names of every per-style parameter (the norms' ``weight`` and ``bias``)."""
        return [
            f"{name}.{kind}"
            for name, module in self.named_modules()
            if isinstance(module, (nn.InstanceNorm2d, ConditionalInstanceNorm2d))
            for kind in ("weight", "bias")
        ]

    @torch.no_grad()
    def baked(self, style_weights: torch.Tensor) -> TransformerNet:
        """A single-style net (``num_styles=1``) computing this net with ``style_weights`` ``(S,)``
        fixed: each norm's scale and shift become ``style_weights @ weight``. Exact (the mix is the
        same linear map), so a style or a blend exports and tiles like any single-style net."""
        if self.num_styles == 1:
            return self
        weights = style_weights.to(torch.float32).reshape(1, self.num_styles)
        net = TransformerNet(**{**full_config(self.config), "num_styles": 1})
        names = set(self.norm_parameter_names())
        state = {
            key: (torch.mm(weights, value.float())[0].to(value.dtype) if key in names else value)
            for key, value in self.state_dict().items()
        }
        net.load_state_dict(state)
        return net.to(next(self.parameters()).device).train(self.training)

    def forward(self, images: torch.Tensor, style_weights: Optional[torch.Tensor] = None) -> torch.Tensor:  # noqa: UP045 (TorchScript)
        """``(B, 3, H, W)`` in [0, 1] -> ``(B, 3, H, W)`` on the [0, 1] scale, unclamped (``output=tanh``:
        within [-0.09, 1.09]).

        ``style_weights``: ``(B, S)`` float, rows summing to 1, for a multi-style net (ignored,
        and may be left out, with one style)."""
        height, width = images.shape[-2:]
        # Two stride-2 stages: pad to a multiple of 4 so the decoder lands on the input size.
        # Replicate (not reflect) so that even 1-3 pixels of padding never exceed the image.
        pad_h, pad_w = (-height) % 4, (-width) % 4
        # Always pad (possibly by 0): no shape-dependent branch, so exports stay dynamic.
        x = F.pad(images, (0, pad_w, 0, pad_h), mode="replicate")
        y = self.decoder(self.residuals(self.encoder(x, style_weights), style_weights), style_weights)
        if self.bounded:
            y = 0.5 + self.output_scale * torch.tanh(y)
        return y[..., :height, :width]
