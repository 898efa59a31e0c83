"""Training callbacks.

* ``SampleImages``: fixed photos stylized every N steps, as a visual check;
* ``Throughput``: ``perf/images_per_sec``;
* ``RNGState``: Python, NumPy and torch RNG streams saved in every checkpoint and restored on
  resume (Lightning restores model, optimizer, schedulers, step and loops, but not the RNGs);
* ``GracefulStop``: SIGTERM (and SIGUSR1 outside SLURM) finishes the current step, saves
  ``last.ckpt`` and stops; under SLURM Lightning's own SIGUSR1 handler saves ``hpc_ckpt_N.ckpt``
  and requeues the job, and ``resume=auto`` picks either up.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torchvision
from pytorch_lightning.plugins.environments import SLURMEnvironment
from pytorch_lightning.utilities.exceptions import SIGTERMException

from fast_style.images import save_image


def stylize_grid(module, content: torch.Tensor) -> torch.Tensor:
    """Row of content photos above their stylized versions (one row per style of a multi-style
    net): ``(3, (1 + styles)*S + pad, N*S + pad)`` in [0, 1]."""
    was_training = module.net.training
    module.net.eval()
    styles = getattr(module.net, "num_styles", 1)
    with torch.no_grad():
        images = content.to(module.device).float().div(255.0)
        if styles == 1:
            stylized = module.net(images).float().clamp(0, 1)
        else:
            eye = torch.eye(styles, device=images.device)
            rows = [module.net(images, eye[i].expand(len(images), -1)) for i in range(styles)]
            stylized = torch.cat(rows).float().clamp(0, 1)
    module.net.train(was_training)
    return torchvision.utils.make_grid(torch.cat([images, stylized]).cpu(), nrow=len(images), padding=2)


class SampleImages(pl.Callback):
    """Every ``every_n_steps`` (and at the end), stylize fixed photos and save/log the grid.

    Only rank 0 writes; the grid goes to ``<run dir>/samples/step_XXXXXX.png`` and to the logger
    (wandb image panel or TensorBoard image) when it has one.
    """

    def __init__(self, content: torch.Tensor, out_dir: str | Path, every_n_steps: int = 500) -> None:
        self.content, self.out_dir, self.every_n_steps = content, Path(out_dir), every_n_steps
        self.last_path: Path | None = None

    def _write(self, trainer: pl.Trainer, module: pl.LightningModule, key: str = "samples") -> None:
        if not trainer.is_global_zero or len(self.content) == 0:
            return
        grid = stylize_grid(module, self.content)
        step = trainer.global_step
        self.last_path = save_image(grid, self.out_dir / f"step_{step:06d}.png")
        for logger in trainer.loggers:
            if hasattr(logger, "log_image"):  # WandbLogger
                logger.log_image(key=key, images=[self.last_path.as_posix()], step=step, caption=[f"step {step}"])
            elif hasattr(getattr(logger, "experiment", None), "add_image"):  # TensorBoard
                logger.experiment.add_image(key, grid, step)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if self.every_n_steps > 0 and trainer.global_step % self.every_n_steps == 0 and trainer.global_step > 0:
            self._write(trainer, module)

    def on_train_end(self, trainer, module) -> None:
        # Its own panel ("final") so the end result is one click away in a sweep's runs table.
        self._write(trainer, module, key="final")


class Throughput(pl.Callback):
    """Logs ``perf/images_per_sec``: training images per wall-clock second, data loading included.

    Averaged over the steps since the last log (every ``trainer.log_every_n_steps``); the first
    step is left out of the first window because it pays for warm-up (compilation, cuDNN autotune).
    """

    def __init__(self) -> None:
        self._images = 0
        self._since: float | None = None

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        if self._since is None:  # end of the first step: start timing from here
            self._since, self._images = now, 0
            return
        images = batch.get("images") if isinstance(batch, dict) else None
        self._images += int(images.shape[0]) * trainer.world_size if images is not None else 0
        if trainer.global_step % max(1, trainer.log_every_n_steps) == 0 and now > self._since:
            module.log("perf/images_per_sec", self._images / (now - self._since), on_step=True, rank_zero_only=True)
            self._since, self._images = now, 0


class RNGState(pl.Callback):
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


class GracefulStop(pl.Callback):
    """On SIGTERM (or SIGUSR1 outside SLURM): finish the step, save ``last_path`` atomically, stop.

    Lightning's signal connector turns SIGTERM into ``trainer.received_sigterm``; the training
    loop then raises ``SIGTERMException`` after the current step, and ``on_exception`` saves here.
    Under SLURM with auto-requeue Lightning owns SIGUSR1 (hpc checkpoint + ``scontrol requeue``),
    so this callback only claims SIGUSR1 elsewhere.
    """

    def __init__(self, last_path: str | Path) -> None:
        self.last_path = Path(last_path)
        self.saved_step: int | None = None
        self._trainer: pl.Trainer | None = None
        self._previous_handler: Any = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
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

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException):
            trainer.save_checkpoint(self.last_path, weights_only=False)  # collective; atomic via AtomicCheckpointIO
            self.saved_step = trainer.global_step
        self._restore_handler()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore_handler()

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._restore_handler()

    def _restore_handler(self) -> None:
        if self._previous_handler is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGUSR1, self._previous_handler)
            self._previous_handler = None
