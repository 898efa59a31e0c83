"""Perceptual loss: a frozen VGG feature extractor, Gram matrices, content/style/TV terms.

Input scale: every function here takes RGB images ``(B, 3, H, W)`` on the [0, 1] scale; the VGG
wrapper applies ImageNet mean/std normalization itself, exactly as torchvision's weights expect.
Gram matrices and every loss are computed in fp32 even under autocast: fp16 Grams overflow
(sums of H*W products of large activations) and bf16 ones lose the precision the loss needs.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from fast_style.errors import FastStyleError
from fast_style.files import sha256_of
from fast_style.model.vgg_layers import VGG_CFGS, vgg_layer_names

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _vgg_features(arch: str, weights) -> nn.Sequential:
    if weights is not None:
        return getattr(torchvision.models, arch)(weights=weights).features
    # Without pretrained weights only the conv stack is needed: building the whole VGG would also
    # initialize its 120M-parameter classifier (seconds of CPU time per run, thrown away).
    features = torchvision.models.vgg.make_layers(VGG_CFGS[arch])
    for module in features.modules():
        if isinstance(module, nn.Conv2d):  # torchvision's VGG initialization
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            nn.init.constant_(module.bias, 0)
    return features


def imagenet_state_dict(weights) -> dict[str, torch.Tensor]:
    """torchvision's ImageNet VGG state dict: downloaded once, its sha256 checked, loaded weights-only.

    torchvision checks the sha256 prefix in the file name (``vgg16-397923af.pth``) only when it
    downloads, and unpickles the cached file with ``weights_only=False``; a swapped or damaged
    file in ``$TORCH_HOME`` would be trusted. Here the cached file is verified on every use and
    never unpickled beyond tensors.
    """
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name
    expected = re.search(r"-([a-f0-9]{8,})\.", cached.name)
    if cached.is_file() and expected and not sha256_of(cached).startswith(expected.group(1)):
        raise FastStyleError(
            f"cached VGG weights {cached} do not match the sha256 prefix {expected.group(1)} in their name: "
            "delete the file so torchvision downloads it again"
        )
    return weights.get_state_dict(progress=True, check_hash=True, weights_only=True)


def load_vgg_features(arch: str, weights: str) -> nn.Sequential:
    """Build torchvision's VGG ``features`` and load weights.

    ``weights``: ``imagenet`` (torchvision's weights API and cache: ``$TORCH_HOME`` is honoured),
    a path to a torchvision-layout state dict (a full VGG dict or one holding only
    ``features.*`` keys), or ``random`` (tests only; warns).
    """
    if weights == "random":
        warnings.warn("perceptual.weights=random: the style loss is meaningless; use this for tests only", stacklevel=2)
        return _vgg_features(arch, weights=None)
    if weights == "imagenet":
        enum = {"vgg16": torchvision.models.VGG16_Weights, "vgg19": torchvision.models.VGG19_Weights}
        try:
            state = imagenet_state_dict(enum[arch].IMAGENET1K_V1)
        except FastStyleError:
            raise
        except Exception as exc:  # no cache and no network: never fall back silently
            raise FastStyleError(
                f"could not load the ImageNet {arch} weights ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}): "
                f"connect to the internet once so torchvision can cache them under $TORCH_HOME, "
                f"or pass perceptual.weights=/path/to/{arch}.pth"
            ) from exc
        features = _vgg_features(arch, weights=None)
        features.load_state_dict(
            {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
        )
        return features
    path = Path(weights).expanduser()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise FastStyleError(
            f"could not read VGG weights {path} ({type(exc).__name__}): pass a torchvision VGG state dict (.pth)"
        ) from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    features_state = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
    features = _vgg_features(arch, weights=None)
    try:
        features.load_state_dict(features_state)
    except RuntimeError as exc:
        raise FastStyleError(
            f"{path} does not match torchvision's {arch} features layout "
            f"({str(exc).splitlines()[0]}): pass a {arch} state dict with features.* keys or set perceptual.arch"
        ) from exc
    return features


class VGGFeatures(nn.Module):
    """Frozen VGG truncated after the deepest requested layer.

    ``forward(images)`` takes ``(B, 3, H, W)`` RGB in [0, 1] and returns ``{layer name: (B, C, h, w)}``.
    """

    def __init__(self, layers: Sequence[str], arch: str = "vgg16", weights: str = "imagenet") -> None:
        super().__init__()
        features = load_vgg_features(arch, weights)
        names = vgg_layer_names(arch)  # the config checks that ``layers`` are among them
        last = max(names.index(name) for name in layers)
        self.layers = nn.Sequential(*list(features)[: last + 1])
        self.names = names[: last + 1]
        self.wanted = set(layers)
        for index, module in enumerate(self.layers):
            if isinstance(module, nn.ReLU):
                # In place only where the input (a conv output) is never returned to the caller.
                module.inplace = index > 0 and self.names[index - 1] not in self.wanted
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGGFeatures:
        return super().train(False)  # frozen: never leaves eval mode

    def forward(self, images: torch.Tensor, layers: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """Features of ``layers`` (default: all requested at construction); stops at the deepest."""
        wanted = self.wanted if layers is None else set(layers)
        if not wanted <= self.wanted:  # an in-place ReLU may have overwritten an unrequested conv output
            raise ValueError(f"layers {sorted(wanted - self.wanted)} were not requested at construction")
        x = (images - self.mean) / self.std  # not in place: the caller's tensor stays untouched
        out = {}
        for name, module in zip(self.names, self.layers, strict=True):
            x = module(x)
            if name in wanted:
                out[name] = x
                if len(out) == len(wanted):
                    break  # nothing deeper is needed: saves most of the VGG for the content pass
        return out


class _Gram(torch.autograd.Function):
    """``(B, N, C)`` features -> ``(B, C, C)`` fp32 ``flat^T @ flat / norm``.

    Forward in fp32 whatever the features' dtype (bf16/fp16 values convert exactly). Backward is
    one product, ``d flat = flat @ (dG + dG^T) / norm`` (the Gram is symmetric), where autograd
    would run two fp32 products, a sum and a cast; for bf16 features it runs in bf16 (fp32 range,
    and the gradient goes on into bf16 convolutions anyway), for fp16 in fp32 (no underflow).
    """

    @staticmethod
    def forward(ctx, flat: torch.Tensor, norm: float) -> torch.Tensor:
        ctx.save_for_backward(flat)
        ctx.norm = norm
        flat32 = flat.float()
        return torch.bmm(flat32.transpose(1, 2), flat32).div_(norm)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (flat,) = ctx.saved_tensors
        dtype = flat.dtype if flat.dtype in (torch.bfloat16, torch.float64) else torch.float32
        symmetric = (grad + grad.transpose(1, 2)).div_(ctx.norm)
        return torch.bmm(flat.to(dtype), symmetric.to(dtype)).to(flat.dtype), None


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, C, C)`` fp32 Gram matrix normalized by C*H*W.

    The product runs in fp32 whatever the features' dtype, so fp16 features cannot overflow it
    (at most 65504^2 * H*W, far below fp32's 3e38) and the loss keeps fp32 precision.
    Channels-last features are used as the ``(B, H*W, C)`` matrix they already are: no copy.
    """
    b, c, h, w = features.shape
    if features.is_contiguous(memory_format=torch.channels_last):
        flat = features.permute(0, 2, 3, 1).reshape(b, h * w, c)  # a view
    else:
        flat = features.reshape(b, c, h * w).transpose(1, 2)
    with torch.autocast(device_type=features.device.type, enabled=False):
        return _Gram.apply(flat, float(c * h * w))


class _SquaredError(torch.autograd.Function):
    """Mean squared error of ``output`` against a constant ``target`` (any matching shapes, dtypes
    and layouts): an fp32 scalar, its gradient in ``output``'s dtype and layout.

    ``F.mse_loss`` under autocast would copy both to fp32, keep its own fp32 gradient and cast it
    back: for the content layer (``relu2_2``: 4x128x128x128 values at 256px) that is four extra
    full passes per step. Here the fp32 difference is made once and reused by the backward.
    """

    @staticmethod
    def forward(ctx, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        diff = output.float() - target.float()
        ctx.save_for_backward(diff)
        ctx.dtype = output.dtype
        return torch.linalg.vector_norm(diff).square() / diff.numel()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (diff,) = ctx.saved_tensors
        return (diff * (grad * (2.0 / diff.numel()))).to(ctx.dtype), None


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between neighbouring pixels of ``(B, 3, H, W)`` images (fp32 scalar)."""
    x = images.float()
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


class PerceptualLoss(nn.Module):
    """Content + style (Gram) + total-variation loss of Johnson et al. against one style image.

    The style Grams are computed once, at construction, from ``style_image`` ``(1, 3, H, W)`` in
    [0, 1] and kept as fp32 buffers (not saved in checkpoints: they are rebuilt from the style).
    A list of S paintings (each ``(1, 3, H_i, W_i)``) trains a multi-style net: ``forward`` then
    takes ``style_index`` ``(B,)``, each sample is compared with its own style's Grams, and
    ``style_factors`` (one per style, default 1) multiply ``style_weight`` per style.

    ``forward(output, content)`` takes the stylized batch and the content batch, both
    ``(B, 3, H, W)`` in [0, 1], and returns fp32 scalars ``{"content", "style", "tv", "total"}``
    where the first three are already multiplied by their weights. Definitions (as in
    pytorch/examples, so its published weights carry over): content = mean squared error of the
    content-layer features; style = sum over style layers of the mean squared error between Grams.

    ``style_layer_weights`` (one per style layer, default all 1) weigh the layers' Gram errors:
    shallow layers (relu1_2) hold fine texture and colour, deep ones (relu4_3) strokes and
    shapes, so these weights set the stroke scale. With several styles it may also be one such
    list per style (S lists, None for all 1), so each painting keeps its own stroke scale in the
    shared net. ``pixel_weight`` adds the mean squared error
    between output and photo in pixel space (jcjohnson's ``-pixel_loss_weight``), reported as
    ``"pixel"`` when non-zero.

    ``normalize=True`` makes every term a *relative* error, independent of the VGG's activation
    scale: each content layer's MSE is divided by the mean square of the photo's features, and each
    style layer's Gram MSE by the mean square of the style Gram. Every layer then counts about
    equally (raw Gram errors of different layers differ by orders of magnitude) and weights carry
    over between VGG weight files and styles; content 1, style ~1-10 is a sensible range.
    """

    def __init__(
        self,
        style_image: torch.Tensor | Sequence[torch.Tensor],
        content_layers: Sequence[str] = ("relu2_2",),
        style_layers: Sequence[str] = ("relu1_2", "relu2_2", "relu3_3", "relu4_3"),
        content_weight: float = 1e5,
        style_weight: float = 1e10,
        tv_weight: float = 0.0,
        arch: str = "vgg16",
        weights: str = "imagenet",
        normalize: bool = False,
        style_layer_weights: Sequence[float] | Sequence[Sequence[float]] | None = None,
        pixel_weight: float = 0.0,
        style_factors: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.content_layers = list(content_layers)
        self.style_layers = list(style_layers)
        self.content_weight, self.style_weight, self.tv_weight = content_weight, style_weight, tv_weight
        self.pixel_weight = pixel_weight
        self.normalize = normalize
        self.vgg = VGGFeatures(sorted(set(self.content_layers) | set(self.style_layers)), arch, weights)
        # Several styles (a multi-style net): one Gram per painting, stacked (S, C, C); the
        # paintings may differ in size, so each goes through the VGG on its own.
        images = list(style_image) if isinstance(style_image, (list, tuple)) else [style_image]
        self.num_styles = len(images)
        table = self._layer_weight_table(style_layer_weights)
        self.register_buffer("layer_weight_table", table, persistent=False)  # (S, L)
        # Style 0's weights by layer: the single-style term (and scripts that weigh one layer).
        self.style_layer_weights = dict(zip(self.style_layers, table[0].tolist(), strict=True))
        self.weighted_layers = [n for n, used in zip(self.style_layers, table.any(0).tolist(), strict=True) if used]
        factors = torch.tensor([1.0] * self.num_styles if style_factors is None else list(style_factors))
        if len(factors) != self.num_styles:
            raise FastStyleError(f"{len(factors)} style factors for {self.num_styles} style images: give one per style")
        self.register_buffer("style_factors", factors.float(), persistent=False)
        with torch.no_grad():
            features = [self.vgg(image.float()) for image in images]
        for name in self.style_layers:
            gram = torch.cat([gram_matrix(f[name]) for f in features])
            self.register_buffer(f"style_gram_{name}", gram, persistent=False)
            if self.num_styles == 1:
                scale = gram.square().mean().clamp_min(1e-12) if normalize else torch.ones(())
            else:  # per style (S,)
                scale = gram.square().mean((1, 2)).clamp_min(1e-12) if normalize else torch.ones(self.num_styles)
            self.register_buffer(f"style_scale_{name}", scale, persistent=False)

    def _layer_weight_table(self, weights: Sequence[float] | Sequence[Sequence[float]] | None) -> torch.Tensor:
        """``style_layer_weights`` -> an ``(S, L)`` fp32 table: one row per style, one column per style layer."""
        layers = len(self.style_layers)
        if weights is None:
            return torch.ones(self.num_styles, layers)
        rows = list(weights)
        if rows and all(isinstance(w, (int, float)) for w in rows):
            rows = [rows] * self.num_styles  # one list for every style
        elif len(rows) != self.num_styles:
            raise FastStyleError(
                f"{len(rows)} lists of style layer weights for {self.num_styles} styles: give one list per style"
            )
        rows = [[1.0] * layers if row is None else row for row in rows]  # None: all 1
        for row in rows:
            if len(row) != layers:
                raise FastStyleError(
                    f"loss.style_layer_weights has {len(row)} values for {layers} style layers "
                    f"{self.style_layers}: give one weight per layer"
                )
        return torch.tensor([[float(w) for w in row] for row in rows])

    def style_gram(self, name: str) -> torch.Tensor:
        return getattr(self, f"style_gram_{name}")

    def style_layer_error(self, features: torch.Tensor, name: str) -> torch.Tensor:
        """Unweighted Gram error of one style layer's ``features`` ``(B, C, h, w)`` against style 0:
        the MSE between Grams, relative to the style Gram's mean square when ``normalize`` (fp32 scalar)."""
        target = self.style_gram(name)[:1].expand(features.shape[0], -1, -1)
        return F.mse_loss(gram_matrix(features), target) / getattr(self, f"style_scale_{name}").reshape(-1)[0]

    def _style_term(self, features: dict[str, torch.Tensor], style_index: torch.Tensor | None = None) -> torch.Tensor:
        if style_index is not None:
            return self._multi_style_term(features, style_index)
        return sum(
            self.style_layer_weights[n] * self.style_layer_error(features[n], n)
            for n in self.style_layers
            if self.style_layer_weights[n] != 0
        )

    def _multi_style_term(self, features: dict[str, torch.Tensor], style_index: torch.Tensor) -> torch.Tensor:
        """Each sample against its own style's Gram (``style_index`` ``(B,)`` long), weighted by
        that style's factor, scale and layer weights; the mean over samples (fp32 scalar). With
        every sample on style 0 of a single-style loss it equals the plain term."""
        total = 0.0
        factors = self.style_factors[style_index]
        layer_weights = self.layer_weight_table[style_index]  # (B, L): each sample's own style
        for column, n in enumerate(self.style_layers):
            if n not in self.weighted_layers:  # no style uses this layer
                continue
            gram = gram_matrix(features[n])
            target = self.style_gram(n)[style_index]
            scale = getattr(self, f"style_scale_{n}").reshape(-1)[style_index if self.num_styles > 1 else 0]
            per_sample = (gram - target).square().mean((1, 2)) / scale
            total = total + (layer_weights[:, column] * per_sample * factors).mean()
        return total

    def content_error(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Unweighted error of one content layer's features ``output`` against the photo's ``target``
        (same shape): MSE, relative to the target's mean square when ``normalize`` (fp32 scalar)."""
        with torch.autocast(device_type=output.device.type, enabled=False):
            error = _SquaredError.apply(output, target.detach())
            if self.normalize:
                error = error / target.float().square().mean().clamp_min(1e-12)
        return error

    @torch.no_grad()
    def style_distance(self, images: torch.Tensor) -> torch.Tensor:
        """Unweighted style term of ``images`` ``(B, 3, H, W)`` in [0, 1]: a fp32 scalar."""
        return self._style_term(self.vgg(images))

    def forward(
        self, output: torch.Tensor, content: torch.Tensor, style_index: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """``style_index`` ``(B,)`` long: each sample's style (several styles); None: style 0 for all."""
        out_features = self.vgg(output)
        with torch.no_grad():
            # The photo only needs the content layers (relu2_2 by default): a third of the VGG.
            content_features = self.vgg(content, self.content_layers)
        content_loss = sum(self.content_error(out_features[n], content_features[n]) for n in self.content_layers)
        style_loss = self._style_term(out_features, style_index)
        terms = {
            "content": self.content_weight * content_loss,
            "style": self.style_weight * style_loss,
            "tv": self.tv_weight * total_variation(output),
        }
        if self.pixel_weight:
            with torch.autocast(device_type=output.device.type, enabled=False):
                terms["pixel"] = self.pixel_weight * _SquaredError.apply(output, content.detach())
        terms["total"] = sum(terms.values())
        return terms
