"""Checkpoint IO that survives kills and strangers: ``AtomicCheckpointIO``, a Lightning plugin.

Every checkpoint is written to a temporary file in the same folder, fsynced and renamed into
place, so a kill at any moment leaves either the previous ``last.ckpt`` or the new one, never a
truncated file. Reads always go through ``checkpoint_format.safe_torch_load``
(``torch.load(weights_only=True)``): a checkpoint cannot run code, whoever made it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from pytorch_lightning.plugins.io import TorchCheckpointIO

from fast_style.checkpoint_format import safe_torch_load
from fast_style.files import atomic_write

TEMP_SUFFIX = ".partial"


def is_local(path: str | Path) -> bool:
    return "://" not in str(path)


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` with write-to-temp + fsync + rename, and weights-only loading.

    Lightning's own ``_atomic_save`` goes through an fsspec transaction that writes to the system
    temp folder and then *moves* the file; across file systems that move is a copy, which a kill
    can interrupt halfway. Writing the temp file next to the target keeps ``os.replace`` atomic.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if not is_local(path):  # remote storage: fsspec's transaction is the best available
            return super().save_checkpoint(checkpoint, path, storage_options)
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO.save_checkpoint takes no storage_options")
        atomic_write(path, lambda tmp: _torch_save(checkpoint, tmp), durable=True, temp_suffix=TEMP_SUFFIX)

    def load_checkpoint(self, path, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        # Whatever the caller asks for, never unpickle arbitrary objects.
        if not is_local(path):
            return super().load_checkpoint(path, map_location=map_location, weights_only=True)
        return safe_torch_load(path)


def _torch_save(checkpoint: dict[str, Any], path: Path) -> None:
    with open(path, "wb") as f:
        torch.save(checkpoint, f)


def remove_partial_files(run_dir: Path) -> list[Path]:
    """Delete temp files a killed writer left behind (``.last.XXXX.partial``); returns them."""
    leftovers = sorted(Path(run_dir).glob(f".*{TEMP_SUFFIX}")) if Path(run_dir).is_dir() else []
    for path in leftovers:
        path.unlink(missing_ok=True)
    return leftovers
