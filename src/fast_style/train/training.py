"""``train(cfg)``: everything ``python train.py`` does, from a composed Hydra config."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from fast_style.allocator import keep_freed_memory
from fast_style.callbacks import SampleImages, Throughput
from fast_style.checkpointing import (
    AtomicCheckpointIO,
    GracefulStop,
    RNGState,
    check_resume_checkpoint,
    remove_partial_files,
    resume_checkpoint,
)
from fast_style.data import write_skipped_report
from fast_style.errors import FastStyleError
from fast_style.export import export_checkpoint
from fast_style.images import load_image
from fast_style.loggers import finish_loggers
from fast_style.module import StyleTransferModule
from fast_style.perceptual import PerceptualLoss
from fast_style.styles import resolve_style_image
from fast_style.validation import resume_mode, validate_train_config


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
        normalize=cfg.loss.get("normalize", False),
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
    validate_train_config(cfg)
    run_dir = Path(cfg.run_dir)
    ckpt_path = resume_checkpoint(cfg.get("ckpt_path"), resume_mode(cfg), run_dir)
    if ckpt_path is not None:  # refuse unsafe, truncated or mismatched files before Lightning loads them
        model_config = {k: v for k, v in OmegaConf.to_container(cfg.model, resolve=True).items() if k != "_target_"}
        check_resume_checkpoint(ckpt_path, model_config)
    remove_partial_files(run_dir)  # what a killed checkpoint writer left behind
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    torch.set_float32_matmul_precision("high")
    keep_freed_memory()  # glibc: reuse each step's activation memory instead of faulting it in again
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
            # A step re-run after a resume overwrites its own file instead of adding step_X-v1.ckpt.
            enable_version_counter=False,
        ),
        SampleImages(samples[: cfg.samples.count], run_dir / "samples", cfg.samples.every_n_steps),
        RNGState(),
        graceful := GracefulStop(run_dir / "last.ckpt"),
    ]
    loggers = [instantiate(logger) for logger in cfg.logger.values()] if cfg.get("logger") else False
    if loggers:
        callbacks += [LearningRateMonitor(logging_interval="step"), Throughput()]
    if ckpt_path is not None:
        keep_csv_history(run_dir, cfg)
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        callbacks=callbacks,
        logger=loggers,
        default_root_dir=str(run_dir),
        plugins=[AtomicCheckpointIO()],
    )
    try:
        for logger in loggers or ():  # the resolved config: wandb's config panel, hparams.yaml, TensorBoard
            logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        final = run_dir / "final.ckpt"
        trainer.save_checkpoint(final)  # collective; AtomicCheckpointIO writes it atomically on rank 0
    except SIGTERMException as exc:
        report_skipped(trainer, module, run_dir)
        raise FastStyleError(
            f"stopped by a signal at step {graceful.saved_step}; saved {graceful.last_path}: "
            "continue with the same command plus resume=true"
        ) from exc
    finally:
        finish_loggers(loggers)  # before the last lines: wandb prints its own summary when it closes
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("loss/")}
    report_skipped(trainer, module, run_dir)
    if trainer.is_global_zero:
        export_final(final, cfg.get("export"))
        print(f"final checkpoint: {final}")  # stays the last stdout line: scripts read it
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


def report_skipped(trainer: L.Trainer, module: StyleTransferModule, run_dir: Path) -> None:
    """Print ``skipped N unreadable files (see <run_dir>/skipped_files.txt)`` once, on rank 0.

    Every rank reads different files, so the lists are merged before counting.
    """
    skipped = list(module.skipped_files)
    if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
        gathered: list = [None] * trainer.world_size
        torch.distributed.all_gather_object(gathered, skipped)
        skipped = [item for part in gathered for item in part]
    if trainer.is_global_zero:
        summary = write_skipped_report(skipped, run_dir)
        if summary:
            print(summary)


def keep_csv_history(run_dir: Path, cfg: DictConfig) -> None:
    """Lightning's CSVLogger deletes an existing metrics.csv: keep it as metrics_<n>.csv when resuming."""
    if not cfg.get("logger") or "csv" not in cfg.logger:
        return
    logs = Path(cfg.logger.csv.save_dir) / str(cfg.logger.csv.name) / str(cfg.logger.csv.get("version") or "")
    current = logs / "metrics.csv"
    if current.is_file():
        index = 1 + sum(1 for _ in logs.glob("metrics_*.csv"))
        os.replace(current, logs / f"metrics_{index}.csv")
