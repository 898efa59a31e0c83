"""Checkpoints that survive kills and strangers.

* ``AtomicCheckpointIO`` (a Lightning ``CheckpointIO`` plugin): every checkpoint is written to a
  temporary file in the same folder, fsynced and renamed into place, so a kill at any moment
  leaves either the previous ``last.ckpt`` or the new one, never a truncated file. Reads always use
  ``torch.load(weights_only=True)``: a checkpoint cannot run code, whoever made it.
* ``resume_checkpoint``: what ``resume=true|auto`` / ``ckpt_path=`` continue from, checked before
  Lightning touches it.
* ``RNGState``: Python, NumPy and torch RNG streams saved in every checkpoint and restored on
  resume (Lightning restores model, optimizer, schedulers, step and loops, but not the RNGs).
* ``GracefulStop``: SIGTERM (and SIGUSR1 outside SLURM) finishes the current step, saves
  ``last.ckpt`` and stops; under SLURM Lightning's own SIGUSR1 handler saves ``hpc_ckpt_N.ckpt``
  and requeues the job, and ``resume=auto`` picks either up.
"""

from __future__ import annotations

import pickle
import random
import signal
import threading
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

from fast_style.errors import FastStyleError
from fast_style.images import atomic_write
from fast_style.runs import resumable_checkpoints

CHECKPOINT_KEY = "fast_style"  # our self-description inside every Lightning checkpoint
# What a checkpoint needs to continue training (final.ckpt and last.ckpt have all of these).
TRAINING_KEYS = ("state_dict", "optimizer_states", "loops", "global_step", CHECKPOINT_KEY)
TEMP_SUFFIX = ".partial"


def safe_torch_load(path: str | Path, hint: str = "pass a .ckpt written by train.py") -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU with one-line ``FastStyleError``s.

    ``weights_only=True`` only rebuilds tensors and plain containers: a pickle whose
    ``__reduce__`` would call ``os.system`` is rejected before anything runs.
    """
    path = Path(path)
    if not path.is_file():
        raise FastStyleError(f"checkpoint {path} does not exist: {hint}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else "unsafe pickle"
        raise FastStyleError(
            f"refusing to load {path}: it holds Python objects that could run code ({reason}); "
            "only load checkpoints you trust and that were written by fast-style"
        ) from exc
    except Exception as exc:
        raise FastStyleError(
            f"cannot read checkpoint {path} ({type(exc).__name__}): it is truncated or not a checkpoint; {hint}"
        ) from exc


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


# -- what to resume from ---------------------------------------------------------------------
def resume_checkpoint(ckpt_path: str | None, resume: str, run_dir: Path) -> Path | None:
    """The checkpoint to continue from, or ``None`` for a fresh run.

    ``ckpt_path`` wins; otherwise ``resume`` (``true``/``auto``/``false``) looks in ``run_dir``
    (``train.py`` points the run folder at the newest earlier run of the style, see ``cli.preflight``).
    """
    if ckpt_path:
        return Path(ckpt_path).expanduser()
    if resume == "false":
        return None
    candidates = resumable_checkpoints(run_dir)
    if candidates:
        return candidates[-1]
    if resume == "true":
        raise FastStyleError(
            f"resume=true but {run_dir} holds no last.ckpt: pass hydra.run.dir=<folder of the run to continue>, "
            "ckpt_path=<checkpoint>, or resume=auto to start fresh when there is nothing to continue"
        )
    return None


def check_resume_checkpoint(path: Path, model_config: dict[str, Any]) -> dict[str, Any]:
    """Load ``path`` weights-only and check it can continue this training; returns the checkpoint.

    Runs before ``trainer.fit`` so that a malicious, truncated or mismatched file gives one line
    instead of a Lightning traceback (Lightning then loads it again through ``AtomicCheckpointIO``).
    """
    checkpoint = safe_torch_load(path, "pass ckpt_path=<a last.ckpt or step_*.ckpt written by train.py>")
    missing = [key for key in TRAINING_KEYS if not isinstance(checkpoint, dict) or key not in checkpoint]
    if missing:
        raise FastStyleError(
            f"{path} cannot continue training (it lacks {', '.join(missing)}): "
            "pass a last.ckpt or step_*.ckpt written by train.py"
        )
    saved = checkpoint[CHECKPOINT_KEY].get("model", {})
    differing = {k: (saved[k], v) for k, v in model_config.items() if k in saved and saved[k] != v}
    if differing:
        details = ", ".join(f"model.{k}={new} but the checkpoint has {old}" for k, (old, new) in differing.items())
        raise FastStyleError(
            f"{path} does not match this config ({details}): resume with the model it was trained with"
        )
    return checkpoint


# -- callbacks --------------------------------------------------------------------------------
class RNGState(L.Callback):
    """Saves the Python, NumPy and torch (CPU and CUDA) RNG states with every checkpoint.

    On resume the streams continue where the checkpoint left them, so the crops and the data
    order do not replay the first steps of the run. Stored as tensors and plain tuples so that
    ``weights_only=True`` loading accepts them.
    """

    def state_dict(self) -> dict[str, Any]:
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        state = {
            "python": random.getstate(),
            "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos)},
            "numpy_gauss": (int(has_gauss), float(cached)),
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
        numpy = state["numpy"]
        has_gauss, cached = state["numpy_gauss"]
        np.random.set_state((numpy["kind"], numpy["keys"].numpy().astype(np.uint32), numpy["pos"], has_gauss, cached))
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])


class GracefulStop(L.Callback):
    """On SIGTERM (or SIGUSR1 outside SLURM): finish the step, save ``last_path`` atomically, stop.

    Lightning's signal connector turns SIGTERM into ``trainer.received_sigterm``; the training
    loop then raises ``SIGTERMException`` after the current step, and ``on_exception`` saves here.
    Under SLURM with auto-requeue Lightning owns SIGUSR1 (hpc checkpoint + ``scontrol requeue``),
    so this callback only claims SIGUSR1 elsewhere.
    """

    def __init__(self, last_path: str | Path) -> None:
        self.last_path = Path(last_path)
        self.saved_step: int | None = None
        self._trainer: L.Trainer | None = None
        self._previous_handler: Any = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Not on_fit_start: Lightning records the handlers to restore after that hook, and would
        # then "restore" this one when fit ends.
        self._trainer = trainer
        environment = trainer._accelerator_connector.cluster_environment
        slurm_owns_sigusr1 = isinstance(environment, SLURMEnvironment) and environment.auto_requeue
        if (
            not slurm_owns_sigusr1
            and hasattr(signal, "SIGUSR1")
            and threading.current_thread() is threading.main_thread()
        ):
            self._previous_handler = signal.signal(signal.SIGUSR1, self._request_stop)

    def _request_stop(self, signum, frame) -> None:
        # Only set the flag: saving inside a signal handler could interrupt a half-done step.
        if self._trainer is not None:
            self._trainer._signal_connector.received_sigterm = True

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException):
            trainer.save_checkpoint(self.last_path, weights_only=False)  # collective; atomic via AtomicCheckpointIO
            self.saved_step = trainer.global_step
        self._restore_handler()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_handler()

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._restore_handler()

    def _restore_handler(self) -> None:
        if self._previous_handler is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGUSR1, self._previous_handler)
            self._previous_handler = None
