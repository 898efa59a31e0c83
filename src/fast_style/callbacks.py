"""Training callbacks: a visual check on fixed photos, and the end-of-run summary."""

from __future__ import annotations

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

    def _write(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if not trainer.is_global_zero or len(self.content) == 0:
            return
        grid = stylize_grid(module, self.content)
        step = trainer.global_step
        self.last_path = save_image(grid, self.out_dir / f"step_{step:06d}.png")
        for logger in trainer.loggers:
            if hasattr(logger, "log_image"):  # WandbLogger
                logger.log_image(key="samples", images=[self.last_path.as_posix()], step=step, caption=[f"step {step}"])
            elif hasattr(getattr(logger, "experiment", None), "add_image"):  # TensorBoard
                logger.experiment.add_image("samples", grid, step)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if self.every_n_steps > 0 and trainer.global_step % self.every_n_steps == 0 and trainer.global_step > 0:
            self._write(trainer, module)

    def on_train_end(self, trainer, module) -> None:
        self._write(trainer, module)
