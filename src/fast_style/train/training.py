"""``train(cfg)``: everything ``python train.py`` does, from a validated config (see the README's data flow)."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.utilities.exceptions import SIGTERMException

from fast_style.checkpoint_format import CHECKPOINT_KEY, net_weights, read_checkpoint
from fast_style.config.schema import StyleConfig
from fast_style.config.style_set import run_name, style_set
from fast_style.errors import FastStyleError
from fast_style.files import atomic_write
from fast_style.images import list_images
from fast_style.infer.export import export_checkpoint
from fast_style.infer.stylizer import Stylizer
from fast_style.model.cpu_kernels import cpu_has_native_bf16, use_fast_kernels
from fast_style.model.networks import TransformerNet, full_config
from fast_style.model.perceptual import PerceptualLoss
from fast_style.model.stability import stability_from_config
from fast_style.train.allocator import keep_freed_memory
from fast_style.train.callbacks import GracefulStop, RNGState, SampleImages, Throughput
from fast_style.train.checkpoint_io import AtomicCheckpointIO, remove_partial_files
from fast_style.train.console import quiet_lightning
from fast_style.train.data import write_skipped_report
from fast_style.train.loggers import finish_loggers
from fast_style.train.module import StyleTransferModule
from fast_style.train.resume import check_resume_checkpoint, keep_csv_history, resume_checkpoint, resume_mode
from fast_style.train.styles import load_style_image


def build_module(cfg: DictConfig) -> StyleTransferModule:
    # [] for the single style of style=; style_weight_factors replace the styles' own factors
    styles = style_set(cfg.get("styles"), StyleConfig, cfg.get("style_weight_factors"))
    names = [style["name"] for style in styles]
    layer_weights = cfg.loss.style_layer_weights
    if styles:  # one net, several styles: conditional instance norm (one scale and shift per style)
        net = instantiate(cfg.model, num_styles=len(styles))
        paintings = [load_style_image(OmegaConf.create(style)) for style in styles]
        factors = [float(style["style_weight_factor"]) for style in styles]
        style_weight = cfg.loss.style_weight
        if cfg.get("per_style_layer_weights") is not None:  # each style its own (null: the shared list)
            layer_weights = [layer_weights if row is None else row for row in cfg.per_style_layer_weights]
    else:
        net = instantiate(cfg.model)
        paintings, factors = load_style_image(cfg.style), None
        style_weight = cfg.loss.style_weight * cfg.style.get("style_weight_factor", 1.0)
    new_styles = None
    if cfg.get("init_from"):
        new_styles = initialize_from(net, cfg.init_from, names or [cfg.style.name])
    net = use_fast_kernels(net, cfg.fast_kernels)
    loss = PerceptualLoss(
        paintings,
        content_layers=list(cfg.perceptual.content_layers),
        style_layers=list(cfg.perceptual.style_layers),
        arch=cfg.perceptual.arch,
        weights=str(cfg.perceptual.weights),
        content_weight=cfg.loss.content_weight,
        style_weight=style_weight,
        style_factors=factors,
        tv_weight=cfg.loss.tv_weight,
        pixel_weight=cfg.loss.pixel_weight,
        normalize=cfg.loss.normalize,
        style_layer_weights=layer_weights,
    )
    metadata = {"style": cfg.style.get("name"), "config": OmegaConf.to_container(cfg, resolve=True)}
    if styles:
        metadata |= {"style": run_name(None, cfg.styles), "styles": names}
    norms_only = cfg.get("train_only") == "norms"
    return StyleTransferModule(
        net,
        loss,
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.scheduler else None,
        metadata=metadata,
        channels_last=cfg.channels_last,
        compile=cfg.compile,
        stability=stability_from_config(cfg.loss),
        train_styles=new_styles if norms_only else None,
        train_only_norms=norms_only,
    )


def initialize_from(net: TransformerNet, path: str, names: list[str]) -> list[int]:
    """Load ``net``'s weights from the checkpoint ``path``; returns the indices of ``names`` (the
    styles of ``net``) that the checkpoint lacks.

    Shared weights must match in shape; each style found in the checkpoint (by name) takes its
    scales and shifts, each new style the mean of the checkpoint's (a neutral start).
    """
    checkpoint = read_checkpoint(path, "pass init_from=<a final.ckpt written by train.py>")
    meta = checkpoint[CHECKPOINT_KEY]
    _, old = net_weights(checkpoint)
    old_names = list(meta.get("styles") or [meta.get("style")])
    # The same weights behind another output layer would paint other pictures (a net saved before
    # model.output existed has a linear one).
    old_output, new_output = full_config(meta.get("model") or {})["output"], full_config(net.config)["output"]
    if old_output != new_output:
        raise FastStyleError(
            f"init_from={path} was trained with model.output={old_output}, this model has {new_output}: "
            f"pass model.output={old_output}"
        )
    norm_keys = set(net.norm_parameter_names())
    state = net.state_dict()
    for key, value in state.items():
        if key not in old:
            raise FastStyleError(f"init_from={path} has no weight {key}: it was trained with another model config")
        if key in norm_keys:
            rows = old[key].reshape(len(old_names), -1)
            mean = rows.mean(0)
            picked = [rows[old_names.index(n)] if n in old_names else mean for n in names]
            value.copy_(torch.stack(picked).reshape(value.shape))
        elif old[key].shape != value.shape:
            raise FastStyleError(
                f"init_from={path} has {key} of shape {tuple(old[key].shape)}, this model {tuple(value.shape)}: "
                f"use the model config it was trained with ({meta.get('model')})"
            )
        else:
            value.copy_(old[key])
    new = [i for i, name in enumerate(names) if name not in old_names]
    print(f"init_from {path}: {len(names) - len(new)} styles loaded, new: {', '.join(names[i] for i in new) or 'none'}")
    return new


def slow_precision_warning(precision: str, accelerator: str) -> str | None:
    """A one-line warning when ``precision`` is bf16 on a CPU that only emulates it (14x slower
    than fp32 on an AVX2-only CPU, docs/performance.md); None where it is fine. Not a silent switch:
    the user keeps the precision they asked for and learns the fix."""
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
    if not (on_cpu and str(precision).startswith("bf16")) or cpu_has_native_bf16():
        return None
    return (
        f"warning: trainer.precision={precision} on a CPU without native bf16 (AVX512-BF16, AMX or Arm BF16) "
        "is emulated (14x slower than fp32 on an AVX2 CPU): add trainer.precision=32"
    )


def train(cfg: DictConfig) -> float:
    """Train, save ``final.ckpt`` into the run directory, print its path, return the final loss."""
    quiet_lightning()
    if warning := slow_precision_warning(cfg.trainer.precision, cfg.trainer.accelerator):
        print(warning, file=sys.stderr)
    run_dir = Path(cfg.run_dir)
    ckpt_path = resume_checkpoint(cfg.ckpt_path, resume_mode(cfg), run_dir)
    if ckpt_path is not None:  # refuse unsafe, truncated or mismatched files before Lightning loads them
        model_config = {k: v for k, v in OmegaConf.to_container(cfg.model, resolve=True).items() if k != "_target_"}
        if cfg.get("styles"):
            model_config["num_styles"] = len(cfg.styles)
        check_resume_checkpoint(ckpt_path, model_config)
    remove_partial_files(run_dir)  # what a killed checkpoint writer left behind
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    torch.set_float32_matmul_precision("high")
    keep_freed_memory()  # glibc: reuse each step's activation memory instead of faulting it in again
    datamodule = instantiate(cfg.data)
    module = build_module(cfg)
    samples = datamodule.sample_images(cfg.samples.count) if cfg.samples.count > 0 else torch.empty(0)
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
        SampleImages(samples, run_dir / "samples", cfg.samples.every_n_steps),
        RNGState(),
        graceful := GracefulStop(run_dir / "last.ckpt"),
    ]
    loggers = [instantiate(logger) for logger in cfg.logger.values()] if cfg.logger else False
    if loggers:
        callbacks += [LearningRateMonitor(logging_interval="step"), Throughput()]
    if ckpt_path is not None:
        keep_csv_history(run_dir, cfg)
    trainer: pl.Trainer = instantiate(
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
        # Collective; AtomicCheckpointIO writes it atomically on rank 0. A full checkpoint (optimizer
        # and loops too): final.ckpt can be continued like last.ckpt.
        trainer.save_checkpoint(final, weights_only=False)
        if trainer.is_global_zero:
            evaluate_final(module, cfg, samples, loggers or [], trainer.global_step, run_dir)
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
        export_final(final, cfg.export)
        print(f"final checkpoint: {final}")  # stays the last stdout line: scripts read it
    close_process_group()
    return metrics.get("loss/total", float("nan"))


def close_process_group() -> None:
    """Wait for every rank (rank 0 may still be exporting), then close the process group.

    Lightning closes only NCCL groups at exit; a gloo group (CPU DDP) left to the interpreter's
    shutdown can abort a rank ("terminate called without an active exception"), and Lightning
    then kills the others, so a finished run would exit non-zero.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def evaluate_final(
    module: StyleTransferModule, cfg: DictConfig, samples: torch.Tensor, loggers, step: int, run_dir: Path
):
    """Quality figures of the final model (``scripts/evaluate.py``'s) on ``evaluate.photos`` or the
    sample photos: logged as ``eval/<figure>`` (wandb summary, csv) and written to evaluation.json,
    so the runs of a sweep can be ranked by numbers."""
    from fast_style.evaluation import judge_for, load_photo, measure_images

    if cfg.evaluate.photos:
        photos = [load_photo(p, cfg.evaluate.size) for p in list_images(cfg.evaluate.photos)]
    else:
        photos = [sample.float().div(255) for sample in samples]  # uint8 crops at the training size
    if not photos:
        return
    config = OmegaConf.to_container(cfg, resolve=True)
    full = copy.deepcopy(module.net).float().to(memory_format=torch.contiguous_format).cpu()
    styles = style_set(cfg.get("styles"), StyleConfig, cfg.get("style_weight_factors"))
    flat, report = {}, {}
    # A multi-style net: each style baked and measured against its own painting (eval/<style>/...).
    for index, style in enumerate(styles or [None]):
        judge = judge_for(config if style is None else {**config, "style": style})
        net = Stylizer(full if style is None else full.baked(torch.eye(len(styles))[index])).eval()
        figures = measure_images(judge, net, photos)
        prefix = "eval/" if style is None else f"eval/{style['name']}/"
        flat |= {f"{prefix}{k}": v for k, v in figures.items() if isinstance(v, float)}
        flat |= {f"{prefix}style_gain_{n}": v for n, v in figures["style_gain_layers"].items()}
        report[style["name"] if style else "model"] = figures
    figures = report["model"] if "model" in report else {"styles": report}
    for logger in loggers:
        logger.log_metrics(flat, step=step)
        logger.save()  # CSVLogger buffers rows until save(): fit() has ended, nothing else will flush them
    text = json.dumps({"photos": len(photos), **figures}, indent=2)
    atomic_write(run_dir / "evaluation.json", lambda tmp: Path(tmp).write_text(text))
    print("quality of the final model: " + ", ".join(f"{k.removeprefix('eval/')} {v:.3f}" for k, v in flat.items()))


def export_final(final: Path, export_cfg: DictConfig) -> None:
    """Export the final model (``export.formats``); a failed export is reported, not fatal: the
    checkpoint is safe and ``scripts/export.py ckpt=...`` can redo it."""
    if not export_cfg.formats:
        return
    try:
        export_checkpoint(final, list(export_cfg.formats), export_cfg.out_dir)
    except FastStyleError as exc:
        print(f"warning: {exc}; rerun python scripts/export.py ckpt={final}", file=sys.stderr)


def report_skipped(trainer: pl.Trainer, module: StyleTransferModule, run_dir: Path) -> None:
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
