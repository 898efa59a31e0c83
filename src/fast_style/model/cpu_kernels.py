"""CPU fast paths for the transformer net, and the switch that turns them on and off.

``fast_style.model.networks`` is built from plain ``torch.nn`` layers. ``use_fast_kernels(net)``
swaps three of them, in place, for subclasses with the same parameters (so state dicts, and
checkpoints, do not change) that run faster on CPUs in bf16/fp16 channels-last:

- ``FastReflectionPad2d``: pads in the input's dtype under autocast (no fp32 round trip);
- ``FastInstanceNorm2d``: keeps channels-last tensors channels-last; bf16/fp16 ones go through
  fused channels-last kernels (the private ops ``torch.native_group_norm`` and
  ``aten::native_batch_norm_backward``; without them it falls back to the plain op);
- ``FewOutputsConv2d``: the 3-channel output convolution computed phase-split (2x2 pixel unshuffle).

Together with the loss's own changes they took a bf16 training step on a 2-core CPU from 1.8x to
3.1x the plain fp32 loop (docs/performance.md). Every other input (CUDA, NCHW, fp32 without
autocast, exports, TorchScript) runs the plain op inside them, and exports swap them out first.

The switch: the ``fast_kernels`` key of the train and stylize configs (``fast_kernels=false``), or
for any caller the environment variable ``FAST_STYLE_FAST_KERNELS=0``, which is what the key
follows when it is left at ``null``. Both paths compute the same function (tests/test_networks.py).
"""

from __future__ import annotations

import functools
import os

import torch
import torch.nn.functional as F
from torch import nn

ENV_VAR = "FAST_STYLE_FAST_KERNELS"


def _private_ops_available() -> bool:
    try:
        return hasattr(torch, "native_group_norm") and hasattr(torch.ops.aten.native_batch_norm_backward, "out")
    except (AttributeError, RuntimeError):
        return False


# The channels-last instance norm needs these; a PyTorch build without them gets the plain op.
PRIVATE_OPS = _private_ops_available()


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (x86: AVX512-BF16 or AMX; Arm: the BF16
    extension, as oneDNN reports it). Without it bf16 is emulated: a bf16 training step took about
    14x as long as an fp32 one on an AVX2-only AMD EPYC (docs/performance.md)."""
    if torch.cpu._is_avx2_supported():  # an x86 CPU: its bf16 instructions are these two
        return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(check()) if check is not None else False


def enabled(setting: bool | None = None) -> bool:
    """``setting`` if given, else ``$FAST_STYLE_FAST_KERNELS`` (on unless 0, false, no or off)."""
    if setting is not None:
        return bool(setting)
    return os.environ.get(ENV_VAR, "1").strip().lower() not in ("0", "false", "no", "off")


def use_fast_kernels(module: nn.Module, setting: bool | None = None) -> nn.Module:
    """Swap the fast layers into ``module`` (or, when the switch is off, back out); returns it.

    In place, by changing each layer's class: parameters, buffers and state-dict keys stay as
    they are, so an optimizer built before or after keeps working and checkpoints stay plain.
    """
    on = enabled(setting)
    for layer in module.modules():
        if on:
            fast = _fast_class(layer)
            if fast is not None:
                layer.__class__ = fast
        elif type(layer) in _PLAIN:
            layer.__class__ = _PLAIN[type(layer)]
    return module


def _fast_class(layer: nn.Module) -> type[nn.Module] | None:
    kind = type(layer)
    if kind is nn.ReflectionPad2d:
        return FastReflectionPad2d
    if kind is nn.InstanceNorm2d and layer.affine and not layer.track_running_stats:
        return FastInstanceNorm2d
    if (
        kind is nn.Conv2d
        and layer.out_channels <= 4  # CPU kernels compute 16 outputs per block anyway
        and layer.stride == (1, 1)
        and layer.padding == (0, 0)
        and layer.dilation == (1, 1)
        and layer.groups == 1
        and layer.kernel_size[0] == layer.kernel_size[1]
        and layer.kernel_size[0] % 2 == 1
    ):
        return FewOutputsConv2d
    return None


class FastReflectionPad2d(nn.ReflectionPad2d):
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


class FastInstanceNorm2d(nn.InstanceNorm2d):
    """Affine instance norm (fp32 statistics) that keeps channels-last tensors channels-last.

    ``(B, C, H, W)`` -> same shape and dtype. PyTorch's kernel views its input as
    ``(1, B*C, H, W)`` and always returns NCHW, so around every norm of a channels-last net the
    activations and their gradients were copied to NCHW and back (~10% of a CPU training step).
    Channels-last bf16/fp16 CPU tensors go through ``_ChannelsLastInstanceNorm`` instead (when
    this PyTorch has the private ops it needs, see ``PRIVATE_OPS``). Everything
    else takes the native op: CUDA (as is: no copy back), NCHW, exports (ONNX gets
    ``InstanceNormalization``) and fp32,
    where the native kernel's rounding does not depend on the thread count (the multi-threaded
    channels-last reductions' does, which a DDP process with fewer threads would see).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():
            if _cpu_fast_path(x, autocast_counts=False) and PRIVATE_OPS:
                return _channels_last_instance_norm(x, self.weight, self.bias, self.eps)
            # CPU only: on CUDA (H200, docs/performance.md) copying the NCHW result back made a
            # channels-last net slower, not faster (1080p inference 32.9 vs 21.3 ms per image,
            # training 441 vs 463 img/s), and so did a layout-keeping var_mean norm.
            if not torch.compiler.is_exporting() and x.device.type == "cpu" and _is_channels_last(x):
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


_PLAIN = {FastReflectionPad2d: nn.ReflectionPad2d, FastInstanceNorm2d: nn.InstanceNorm2d, FewOutputsConv2d: nn.Conv2d}
