"""Loading trained stylizers and applying them to images.

Contract everywhere: images are RGB float ``(B, 3, H, W)`` (or ``(3, H, W)``) in [0, 1]; outputs
have the input's size and are clamped to [0, 1].
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fast_style.checkpointing import CHECKPOINT_KEY, safe_torch_load
from fast_style.errors import FastStyleError
from fast_style.networks import TransformerNet, strip_compile_prefix


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


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a fast-style Lightning checkpoint safely (``weights_only=True``: no code can run)."""
    path = Path(path)
    checkpoint = safe_torch_load(path, hint="pass ckpt=<path printed at the end of training>")
    if not isinstance(checkpoint, dict) or CHECKPOINT_KEY not in checkpoint or "state_dict" not in checkpoint:
        raise FastStyleError(
            f"{path} is not a fast-style checkpoint (no '{CHECKPOINT_KEY}' section): pass a .ckpt written by train.py"
        )
    return checkpoint


def network_from_checkpoint(checkpoint: dict[str, Any]) -> TransformerNet:
    """Rebuild the TransformerNet described by a checkpoint and load its weights (eval mode)."""
    config = checkpoint[CHECKPOINT_KEY]["model"]
    net = TransformerNet(**config)
    state = {
        k.removeprefix("net."): v
        for k, v in strip_compile_prefix(checkpoint["state_dict"]).items()
        if k.startswith("net.")
    }
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise FastStyleError(
            f"checkpoint weights do not match the model config {config}: the file is damaged or from another version"
        ) from exc
    return net.eval().requires_grad_(False)


def load_stylizer(path: str | Path) -> Stylizer:
    """Checkpoint path -> eval-mode ``Stylizer`` on the CPU."""
    return Stylizer(network_from_checkpoint(read_checkpoint(path))).eval()


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise FastStyleError(f"device={device} but CUDA is not available here: use device=cpu or device=auto")
    try:
        return torch.device(device)
    except RuntimeError as exc:
        raise FastStyleError(f"device={device!r} is not a device: use auto, cpu or cuda") from exc
