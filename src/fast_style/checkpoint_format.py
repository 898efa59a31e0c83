"""What a fast-style checkpoint holds and how it is read safely (torch only: no Lightning).

``train.py`` writes Lightning checkpoints (``final.ckpt``, ``last.ckpt``, ``step_*.ckpt``): a
``torch.save`` zip whose ``state_dict`` holds only the transformer net (keys ``net.*``) and whose
``fast_style`` section describes it (``format_version``, ``model`` config, ``style``, the
resolved training ``config``). Training adds optimizer, loop and RNG state (``TRAINING_KEYS``).
Every read goes through ``safe_torch_load``: ``torch.load(weights_only=True)``, so a file whose
unpickling would run code is refused, and a file that is no checkpoint at all gets its own line.
"""

from __future__ import annotations

import pickle
import re
import struct
import zipfile
from pathlib import Path
from typing import Any

import torch

from fast_style.errors import FastStyleError

CHECKPOINT_KEY = "fast_style"  # our self-description inside every Lightning checkpoint
FORMAT_VERSION = 1
NET_PREFIX = "net."  # the transformer net's keys in the checkpoint's state_dict
# What a checkpoint needs to continue training (final.ckpt and last.ckpt have all of these).
TRAINING_KEYS = ("state_dict", "optimizer_states", "loops", "global_step", CHECKPOINT_KEY)
_CODE = re.compile(r"unsupported GLOBAL (\S+)", re.IGNORECASE)


def strip_compile_prefix(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove the ``_orig_mod.`` that ``torch.compile`` wrappers add to every key."""
    return {key.replace("_orig_mod.", ""): value for key, value in state_dict.items()}


def file_kind(path: str | Path) -> str | None:
    """What ``path`` holds, from its first bytes: ``torch`` (a ``torch.save`` zip or legacy pickle),
    ``torchscript``, ``safetensors``, or ``None`` (anything else: text, empty, a truncated zip...)."""
    with open(path, "rb") as f:
        head = f.read(9)
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError, ValueError):
            return None  # truncated or damaged
        if any(name.endswith("/constants.pkl") for name in names):
            return "torchscript"
        return "torch" if any(name.endswith("data.pkl") for name in names) else None
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "torch"  # torch.save(..., _use_new_zipfile_serialization=False): a pickle stream
    if len(head) == 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] < 1 << 30:
        return "safetensors"  # 8-byte header length, then the JSON header
    return None


def safe_torch_load(path: str | Path, hint: str = "pass a .ckpt written by train.py") -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU with one-line ``FastStyleError``s.

    ``weights_only=True`` only rebuilds tensors and plain containers: a pickle whose
    ``__reduce__`` would call ``os.system`` is refused before anything runs.
    """
    path = Path(path)
    if not path.is_file():
        raise FastStyleError(f"checkpoint {path} does not exist: {hint}")
    if file_kind(path) != "torch":
        raise FastStyleError(f"{path.name} is not a PyTorch checkpoint: {hint}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        code = _CODE.search(str(exc))
        if code is None:
            raise FastStyleError(f"{path.name} is a damaged PyTorch checkpoint: {hint}") from None
        raise FastStyleError(
            f"refusing to load {path}: it holds Python objects that could run code ({code.group(1)}); "
            "only load checkpoints you trust and that were written by fast-style"
        ) from None
    except Exception as exc:
        raise FastStyleError(f"{path.name} is a damaged PyTorch checkpoint ({type(exc).__name__}): {hint}") from None


def read_checkpoint(path: str | Path, hint: str = "pass ckpt=<path printed at the end of training>") -> dict[str, Any]:
    """Load a fast-style checkpoint safely; it must carry the ``fast_style`` section and a state dict."""
    path = Path(path)
    checkpoint = safe_torch_load(path, hint)
    if not isinstance(checkpoint, dict) or CHECKPOINT_KEY not in checkpoint or "state_dict" not in checkpoint:
        raise FastStyleError(
            f"{path} is not a fast-style checkpoint (no '{CHECKPOINT_KEY}' section): pass a .ckpt written by train.py"
        )
    return checkpoint


def net_weights(checkpoint: dict[str, Any]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(model config, transformer-net state dict)`` of a checkpoint read by ``read_checkpoint``."""
    state = {
        key.removeprefix(NET_PREFIX): value
        for key, value in strip_compile_prefix(checkpoint["state_dict"]).items()
        if key.startswith(NET_PREFIX)
    }
    return dict(checkpoint[CHECKPOINT_KEY]["model"]), state
