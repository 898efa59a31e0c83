"""A trained network packaged for inference, rebuilt from a checkpoint.

Contract everywhere: images are RGB float ``(B, 3, H, W)`` (or ``(3, H, W)``) in [0, 1]; outputs
have the input's size and are clamped to [0, 1].
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from fast_style.checkpoint_format import net_weights, read_checkpoint
from fast_style.errors import FastStyleError
from fast_style.model.networks import TransformerNet


class Stylizer(nn.Module):
    """A trained TransformerNet packaged for inference and export.

    ``forward`` takes ``(B, 3, H, W)`` in [0, 1] of any size (1x1 included) and returns the
    stylized batch, same size, clamped to [0, 1]. A replicate margin around the image gives the
    network context at the borders and room for tiny inputs; it is cropped off again.
    """

    def __init__(self, net: TransformerNet, margin: int = 8) -> None:
        super().__init__()
        self.net, self.margin = net, margin

    def forward(self, images: torch.Tensor, style_weights: Optional[torch.Tensor] = None) -> torch.Tensor:  # noqa: UP045 (TorchScript)
        m = self.margin
        height, width = images.shape[-2:]
        padded = F.pad(images, (m, m, m, m), mode="replicate")
        out = self.net(padded, style_weights)[..., m : m + height, m : m + width]
        return out.clamp(0.0, 1.0)


def network_from_checkpoint(checkpoint: dict[str, Any]) -> TransformerNet:
    """Rebuild the TransformerNet described by a checkpoint and load its weights (eval mode)."""
    config, state = net_weights(checkpoint)
    net = TransformerNet(**config)
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise FastStyleError(
            f"checkpoint weights do not match the model config {config}: the file is damaged or from another version"
        ) from exc
    return net.eval().requires_grad_(False)


def load_stylizer(path: str | Path) -> Stylizer:
    """Checkpoint path -> eval-mode ``Stylizer`` on the CPU (plain PyTorch layers)."""
    return Stylizer(network_from_checkpoint(read_checkpoint(path))).eval()


def style_mixes(spec: Any, names: list[str]) -> list[tuple[str, torch.Tensor]]:
    """``style=`` of a multi-style model -> ``[(label, weights (S,) float32 summing to 1), ...]``.

    ``spec``: a style name (``wave``), ``all`` (one entry per style), or a blend given as a list
    ``[starry_night:0.7,wave:0.3]`` or the string ``"starry_night:0.7,wave:0.3"``: weights >= 0,
    normalized to sum to 1 (a name without ``:w`` counts 1). ``names``: the model's styles in order.
    A name the model lacks is one line listing the ones it has.
    """
    if spec is None:
        raise FastStyleError(
            f"this model holds {len(names)} styles ({', '.join(names)}): pass style=<name>, a blend such as "
            f"style=[{names[0]}:0.5,{names[-1]}:0.5], or style=all"
        )
    parts = [str(p).strip() for p in spec] if not isinstance(spec, str) else spec.split(",")
    parts = [p for p in parts if p]
    if parts == ["all"]:
        return [(name, torch.eye(len(names))[i]) for i, name in enumerate(names)]
    weights = torch.zeros(len(names))
    for part in parts:
        name, _, value = part.partition(":")
        name = name.strip()
        if name not in names:
            raise FastStyleError(f"unknown style {name!r}: this model has {', '.join(names)} (or style=all)")
        try:
            weight = float(value) if value else 1.0
        except ValueError:
            weight = float("nan")
        if not weight >= 0 or weight == float("inf"):
            raise FastStyleError(f"style weight {part!r} is not allowed: write name:weight with a number >= 0")
        weights[names.index(name)] += weight
    if not parts or float(weights.sum()) <= 0:
        raise FastStyleError(f"style={spec} gives every style weight 0: give at least one style a weight > 0")
    label = (
        parts[0].partition(":")[0]
        if len(parts) == 1
        else "+".join(
            f"{n}{float(w):.2g}" for n, w in zip(names, (weights / weights.sum()).tolist(), strict=True) if w > 0
        )
    )
    return [(label.strip(), weights / weights.sum())]


def resolve_device(device: str) -> torch.device:
    """A validated ``device=`` setting (auto, cpu, cuda, cuda:N) -> ``torch.device``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise FastStyleError(f"device={device} but CUDA is not available here: use device=cpu or device=auto")
    return torch.device(device)


def take_peak_gpu_gib(device: torch.device) -> float | None:
    """GiB of GPU memory allocated at the peak since the last call (then reset); None off CUDA.

    The benchmarks call it once before a loop and once after, so each loop reports its own peak.
    """
    if device.type != "cuda":
        return None
    peak = torch.cuda.max_memory_allocated(device) / 2**30
    torch.cuda.reset_peak_memory_stats(device)
    return peak
