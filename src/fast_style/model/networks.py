"""The feed-forward transformer net of Johnson, Alahi & Fei-Fei (2016).

Changes from the paper, all standard by now:
- instance norm (Ulyanov et al. 2016) instead of batch norm: far better stylization;
- nearest-neighbour upsampling followed by a convolution instead of transposed convolutions:
  no checkerboard artifacts (Odena et al. 2016);
- reflection padding everywhere instead of zeros: no dark or bright frame at the borders.

Three layers are re-implemented for CPU speed, with the same parameters and results as their
``torch.nn`` parents (so state dicts are plain): the instance norm keeps channels-last tensors in
their layout, the reflection pad stays in the input's dtype under autocast, and the 3-channel
output convolution runs phase-split (see each class). Together with the loss's own changes they
took a bf16 training step on a 2-core CPU from 1.8x to 3.1x the plain fp32 loop
(docs/performance.md); exports, CUDA and fp32 use the plain PyTorch ops.

Tensor contract: ``TransformerNet`` takes RGB images ``(B, 3, H, W)`` on the [0, 1] scale and
returns ``(B, 3, H, W)`` on the same scale *unclamped* (training sees the raw values; the
stylizers in ``inference`` and ``export`` clamp). Any H, W >= 5 works, odd sizes included: the
input is padded to a multiple of 4 for the two stride-2 stages and the output is cropped back.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn


class ReflectionPad2d(nn.ReflectionPad2d):
    """Reflection padding in the input's own dtype.

    CPU autocast lists ``reflection_pad2d`` as an fp32 op, so under bf16 autocast every pad would
    copy its bf16 input to fp32 and the next convolution would copy it back: two full-size copies
    per layer for an op that only moves values (about 15% of the transformer's training step).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():
            if torch.is_autocast_enabled(x.device.type):
                return _pad_outside_autocast(x, self.padding)
        return F.pad(x, self.padding, mode="reflect")


@torch.jit.unused
def _pad_outside_autocast(x: torch.Tensor, padding: tuple[int, int, int, int]) -> torch.Tensor:
    with torch.autocast(x.device.type, enabled=False):
        return F.pad(x, padding, mode="reflect")


class InstanceNorm2d(nn.InstanceNorm2d):
    """Affine instance norm (fp32 statistics) that keeps channels-last tensors channels-last.

    ``(B, C, H, W)`` -> same shape and dtype. PyTorch's kernel views its input as
    ``(1, B*C, H, W)`` and always returns NCHW, so around every norm of a channels-last net the
    activations and their gradients were copied to NCHW and back (~10% of a CPU training step).
    Channels-last bf16/fp16 CPU tensors go through ``_ChannelsLastInstanceNorm`` instead. Everything
    else takes the native op: CUDA, NCHW, exports (ONNX gets ``InstanceNormalization``) and fp32,
    where the native kernel's rounding does not depend on the thread count (the multi-threaded
    channels-last reductions' does, which a DDP process with fewer threads would see).
    """

    def __init__(self, channels: int) -> None:
        super().__init__(channels, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():
            if _cpu_fast_path(x, autocast_counts=False):
                return _channels_last_instance_norm(x, self.weight, self.bias, self.eps)
            if not torch.compiler.is_exporting() and _is_channels_last(x):
                y = F.instance_norm(x, weight=self.weight, bias=self.bias, eps=self.eps)
                return y.contiguous(memory_format=torch.channels_last)
        return F.instance_norm(x, weight=self.weight, bias=self.bias, eps=self.eps)


@torch.jit.unused
def _is_channels_last(x: torch.Tensor) -> bool:
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


@torch.jit.unused
def _cpu_fast_path(x: torch.Tensor, autocast_counts: bool) -> bool:
    """Whether ``x`` takes this module's hand-fused CPU paths: a channels-last bf16/fp16 CPU tensor
    (or fp32 under CPU autocast, if ``autocast_counts``), outside exports, which keep plain ops."""
    if torch.compiler.is_exporting() or torch.jit.is_tracing() or x.device.type != "cpu":
        return False
    low_precision = x.dtype in (torch.bfloat16, torch.float16) or (autocast_counts and torch.is_autocast_enabled("cpu"))
    return low_precision and _is_channels_last(x)


@torch.jit.unused
def _channels_last_instance_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    return _ChannelsLastInstanceNorm.apply(x, weight, bias, eps)


class _ChannelsLastInstanceNorm(torch.autograd.Function):
    """Instance norm of a channels-last CPU ``(B, C, H, W)`` tensor, in its layout, fp32 math.

    PyTorch has fused channels-last CPU kernels for the pieces: group norm with one group per
    channel *is* instance norm (forward), and batch norm of a single sample normalizes each
    channel over (H, W), so its backward, one sample at a time, is instance norm's backward
    (group norm's own backward kernel is several times slower for channels-last).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
        b, c, h, w = x.shape
        y, mean, rstd = torch.native_group_norm(x, weight, bias, b, c, h * w, c, eps)
        ctx.save_for_backward(x, weight, mean, rstd)
        ctx.eps = eps
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight, mean, rstd = ctx.saved_tensors
        grad = grad.contiguous(memory_format=torch.channels_last)
        dx = torch.empty_like(x)  # channels-last, like x
        dweight, dbias = weight.new_empty(2, *mean.shape).unbind(0)  # per sample, summed below
        for i in range(x.shape[0]):
            torch.ops.aten.native_batch_norm_backward.out(
                grad[i : i + 1], x[i : i + 1], weight, None, None, mean[i], rstd[i], True, ctx.eps, [True] * 3,
                out0=dx[i : i + 1], out1=dweight[i], out2=dbias[i],
            )  # fmt: skip
        dweight, dbias = dweight.sum(0), dbias.sum(0)
        return dx, dweight, dbias, None


class FewOutputsConv2d(nn.Conv2d):
    """A stride-1 convolution with few output channels (the net's 32 -> 3, 9x9 output layer).

    CPU convolution kernels work on blocks of 16 output channels, so 3 outputs cost as much as
    16. On channels-last CPU inputs of even size this layer instead computes the identical
    convolution on the 2x2 pixel-unshuffled input: each output pixel's 2x2 phase becomes a
    channel (3 -> 12 outputs, 32 -> 128 inputs, 9x9 -> 5x5 taps on a half-size grid), then pixel
    shuffle puts them back. Same parameters and result up to rounding; in training (forward and
    backward, bf16, 256x256 batch 4) the layer went from 120 to 65 ms on a 2-core AVX512-BF16 CPU.
    Any other input (CUDA, NCHW, fp32 without autocast, odd sizes, exports) runs the plain
    convolution.
    """

    PHASES = 2  # pixel-unshuffle factor

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, kernel_size, bias=bias)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():
            if _cpu_fast_path(x, autocast_counts=True) and x.shape[-2] % 2 == 0 and x.shape[-1] % 2 == 0:
                return _phase_conv(x, self.weight, self.bias, self.PHASES)
        return self._conv_forward(x, self.weight, self.bias)


@torch.jit.unused
def _phase_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, s: int) -> torch.Tensor:
    """``conv2d(x, weight, bias)`` (stride 1, no padding, odd kernel) computed on the ``s x s``
    pixel-unshuffled ``x``; height and width of ``x`` must be multiples of ``s``."""
    index, valid = _phase_kernel_layout(weight.shape, s, weight.device)
    phase_weight = weight.flatten()[index] * valid  # differentiable: gradients flow back to weight
    phase_bias = None if bias is None else bias.repeat_interleave(s * s)
    y = F.conv2d(F.pixel_unshuffle(x, s), phase_weight.contiguous(memory_format=torch.channels_last), phase_bias)
    return F.pixel_shuffle(y, s)


@functools.lru_cache(maxsize=8)
def _phase_kernel_layout(shape: torch.Size, s: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each entry ``[(o, a, b), (c, r, t), m, n]`` of the phase kernel comes from: the flat
    index of ``weight[o, c, s*m + r - a, s*n + t - b]`` and whether that tap lies in the kernel.
    ``(o, a, b)`` is output channel o at phase (a, b) and ``(c, r, t)`` the same for inputs, in
    the channel order of ``pixel_shuffle``/``pixel_unshuffle``."""
    out_channels, in_channels, k, _ = shape
    taps = (k - 1) // s + 1  # phase-grid kernel size; output size works out for odd k, s = 2
    o, a, b, c, r, t, m, n = torch.meshgrid(
        *(torch.arange(size, device=device) for size in (out_channels, s, s, in_channels, s, s, taps, taps)),
        indexing="ij",
    )
    u, v = s * m + r - a, s * n + t - b
    valid = (u >= 0) & (u < k) & (v >= 0) & (v < k)
    index = ((o * in_channels + c) * k + u.clamp(0, k - 1)) * k + v.clamp(0, k - 1)
    phase_shape = (out_channels * s * s, in_channels * s * s, taps, taps)
    return index.reshape(phase_shape), valid.reshape(phase_shape)


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
            ReflectionPad2d(kernel_size // 2),
            # A bias before instance norm is subtracted right away with the mean: leave it out
            # (its gradient is zero, so it would only collect rounding noise).
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, bias=not norm)
            if out_channels > 4 or stride != 1 or kernel_size % 2 == 0
            else FewOutputsConv2d(in_channels, out_channels, kernel_size, bias=not norm),
        ]
        if norm:
            layers.append(InstanceNorm2d(out_channels))
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


def strip_compile_prefix(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove the ``_orig_mod.`` that ``torch.compile`` wrappers add to every key."""
    return {key.replace("_orig_mod.", ""): value for key, value in state_dict.items()}
