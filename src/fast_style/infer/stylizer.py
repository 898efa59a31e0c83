"""A trained network packaged for inference, rebuilt from a checkpoint.

Contract everywhere: images are RGB float ``(B, 3, H, W)`` (or ``(3, H, W)``) in [0, 1]; outputs
have the input's size and are clamped to [0, 1].
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

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

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        m = self.margin
        height, width = images.shape[-2:]
        padded = F.pad(images, (m, m, m, m), mode="replicate")
        out = self.net(padded)[..., m : m + height, m : m + width]
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


def resolve_device(device: str) -> torch.device:
    """A validated ``device=`` setting (auto, cpu, cuda, cuda:N) -> ``torch.device``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise FastStyleError(f"device={device} but CUDA is not available here: use device=cpu or device=auto")
    return torch.device(device)
