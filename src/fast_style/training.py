"""``train(cfg)``: everything ``python train.py`` does, from a composed Hydra config."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from fast_style.callbacks import SampleImages
from fast_style.errors import FastStyleError
from fast_style.export import export_checkpoint
from fast_style.images import load_image
from fast_style.module import StyleTransferModule
from fast_style.perceptual import PerceptualLoss
from fast_style.styles import resolve_style_image


def load_style_image(style: DictConfig) -> torch.Tensor:
    """The style painting as ``(1, 3, H, W)`` in [0, 1], its longer side resized to ``style.size``."""
    path = resolve_style_image(style.get("image"), style.get("url"), style.get("sha256"), style.get("name", "style"))
    image = load_image(path)
    if style.get("size"):
        h, w = image.shape[-2:]
        scale = style.size / max(h, w)
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        image = torch.nn.functional.interpolate(
            image[None], size=size, mode="bicubic", antialias=True, align_corners=False
        )[0]
    return image.clamp(0, 1)[None]


def build_module(cfg: DictConfig) -> StyleTransferModule:
    net = instantiate(cfg.model)
    loss = PerceptualLoss(
        load_style_image(cfg.style),
        content_layers=list(cfg.perceptual.content_layers),
        style_layers=list(cfg.perceptual.style_layers),
        arch=cfg.perceptual.arch,
        weights=str(cfg.perceptual.weights),
        content_weight=cfg.loss.content_weight,
        style_weight=cfg.loss.style_weight,
        tv_weight=cfg.loss.tv_weight,
    )
    metadata = {"style": cfg.style.get("name"), "config": OmegaConf.to_container(cfg, resolve=True)}
    return StyleTransferModule(
        net,
        loss,
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
        metadata=metadata,
        channels_last=cfg.channels_last,
        compile=cfg.compile,
    )


def train(cfg: DictConfig) -> float:
    """Train, save ``final.ckpt`` into the run directory, print its path, return the final loss."""
    run_dir = Path(cfg.run_dir)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    torch.set_float32_matmul_precision("high")
    datamodule = instantiate(cfg.data)
    module = build_module(cfg)
    samples = datamodule.sample_images() if cfg.samples.count > 0 else torch.empty(0)
    callbacks = [
        ModelCheckpoint(
            dirpath=run_dir,
            filename="step_{step:06d}",
            auto_insert_metric_name=False,
            every_n_train_steps=cfg.checkpoint.every_n_steps,
            save_top_k=cfg.checkpoint.keep,
            monitor="global_step",
            mode="max",
            save_last=True,
        ),
        SampleImages(samples[: cfg.samples.count], run_dir / "samples", cfg.samples.every_n_steps),
    ]
    loggers = [instantiate(logger) for logger in cfg.logger.values()] if cfg.get("logger") else False
    if loggers:
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers, default_root_dir=str(run_dir))
    ckpt_path = cfg.get("ckpt_path") or ("last" if cfg.get("resume") else None)
    if ckpt_path == "last" and not (run_dir / "last.ckpt").is_file():
        raise FastStyleError(
            f"resume=true but {run_dir / 'last.ckpt'} does not exist: pass run_dir=<folder of the run to resume> or ckpt_path=..."
        )
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    final = save_checkpoint_atomic(trainer, run_dir / "final.ckpt")
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("loss/")}
    if trainer.is_global_zero:
        export_final(final, cfg.get("export"))
        print(f"final checkpoint: {final}")  # keep last: scripts read the path from the last line
    return metrics.get("loss/total", float("nan"))


def export_final(final: Path, export_cfg: DictConfig | None) -> None:
    """Export the final model (``export.formats``); a failed export is reported, not fatal: the
    checkpoint is safe and ``scripts/export.py ckpt=...`` can redo it."""
    formats = list(export_cfg.get("formats") or []) if export_cfg else []
    if not formats:
        return
    try:
        export_checkpoint(final, formats, export_cfg.get("out_dir"))
    except FastStyleError as exc:
        print(f"warning: {exc}; rerun python scripts/export.py ckpt={final}", file=sys.stderr)


def save_checkpoint_atomic(trainer: L.Trainer, path: Path) -> Path:
    """Write a checkpoint next to ``path`` and rename it into place (all ranks must call this)."""
    tmp = path.with_name(f".{path.name}.tmp")
    trainer.save_checkpoint(tmp)  # collective: rank 0 writes, every rank waits
    if trainer.is_global_zero:
        os.replace(tmp, path)
    trainer.strategy.barrier("fast_style.save_checkpoint_atomic")
    return path


def configure_environment() -> None:
    """Quiet, non-interactive defaults for libraries that otherwise prompt or phone home."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
