"""Training callbacks: a visual check on fixed photos, and training throughput."""

from __future__ import annotations

import time
from pathlib import Path

import lightning as L
import torch
import torchvision

from fast_style.images import save_image


def stylize_grid(module, content: torch.Tensor) -> torch.Tensor:
    """Row of content photos above their stylized versions: ``(3, 2*S + pad, N*S + pad)`` in [0, 1]."""
    was_training = module.net.training
    module.net.eval()
    with torch.no_grad():
        images = content.to(module.device).float().div(255.0)
        stylized = module.net(images).float().clamp(0, 1)
    module.net.train(was_training)
    return torchvision.utils.make_grid(torch.cat([images, stylized]).cpu(), nrow=len(images), padding=2)


class SampleImages(L.Callback):
    """Every ``every_n_steps`` (and at the end), stylize fixed photos and save/log the grid.

    Only rank 0 writes; the grid goes to ``<run dir>/samples/step_XXXXXX.png`` and to the logger
    (wandb image panel or TensorBoard image) when it has one.
    """

    def __init__(self, content: torch.Tensor, out_dir: str | Path, every_n_steps: int = 500) -> None:
        self.content, self.out_dir, self.every_n_steps = content, Path(out_dir), every_n_steps
        self.last_path: Path | None = None

    def _write(self, trainer: L.Trainer, module: L.LightningModule, key: str = "samples") -> None:
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


class Throughput(L.Callback):
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
