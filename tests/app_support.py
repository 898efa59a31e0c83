"""Shared by the web-app tests: tiny models made on the spot and free local ports."""

from __future__ import annotations

import socket
from pathlib import Path

import torch

from fast_style.model.networks import TransformerNet


def write_tiny_model(path: Path, style: str, seed: int = 0) -> Path:
    """A random-init 8-channel network saved as a fast-style checkpoint (what train.py writes,
    less the optimizer): loads through every code path a trained one does, in milliseconds."""
    torch.manual_seed(seed)
    net = TransformerNet(channels=8, residual_blocks=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {f"net.{key}": value for key, value in net.state_dict().items()}
    torch.save({"state_dict": state, "fast_style": {"model": net.config, "style": style}}, path)
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
