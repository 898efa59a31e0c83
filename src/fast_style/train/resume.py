"""Resuming a run, all of it: which run folder, which checkpoint, is it usable, what to keep.

Importing this module does not import torch: ``train.py`` picks the run folder to continue
(``resume=true|auto``) before PyTorch is loaded, so that Hydra writes into the folder the run
started in.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from fast_style.config.style_set import run_name
from fast_style.errors import FastStyleError


def resume_mode(cfg: DictConfig) -> str:
    """``cfg.resume`` as one of ``true``, ``false``, ``auto`` (the schema keeps it a string)."""
    return str(OmegaConf.select(cfg, "resume", default="false")).lower()


def resumable_checkpoints(run_dir: str | Path) -> list[Path]:
    """``last.ckpt`` and SLURM's ``hpc_ckpt_N.ckpt`` in ``run_dir``, oldest first (by mtime)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [p for p in [run_dir / "last.ckpt", *run_dir.glob("hpc_ckpt_*.ckpt")] if p.is_file()]
    return sorted(found, key=lambda p: p.stat().st_mtime_ns)


def find_run_to_resume(style_root: str | Path) -> Path | None:
    """The run folder under ``<output_root>/<style name>`` whose resumable checkpoint is newest."""
    style_root = Path(style_root)
    if not style_root.is_dir():
        return None
    newest: tuple[int, Path] | None = None
    for run_dir in style_root.iterdir():
        candidates = resumable_checkpoints(run_dir)
        if candidates:
            mtime = candidates[-1].stat().st_mtime_ns
            if newest is None or mtime > newest[0]:
                newest = (mtime, run_dir)
    return newest[1] if newest else None


def run_dir_to_resume(cfg: DictConfig, overrides: list[str]) -> Path | None:
    """For ``resume=true|auto``: the newest earlier run of this style with a resumable checkpoint,
    for Hydra to write into again; ``None`` to start a new run folder.

    Left alone when the command line pins the folder (``hydra.run.dir=``) or names a checkpoint.
    """
    mode = resume_mode(cfg)
    pinned = any(o.lstrip("+").split("=", 1)[0] in ("hydra.run.dir", "run_dir") for o in overrides)
    if mode == "false" or pinned or OmegaConf.select(cfg, "ckpt_path"):
        return None
    style_root = Path(str(cfg.output_root)).expanduser() / run_name(cfg.style.name, cfg.get("styles"))
    run_dir = find_run_to_resume(style_root)
    if run_dir is None and mode == "true":
        raise FastStyleError(
            f"resume=true but no run under {style_root} has a last.ckpt: "
            "pass hydra.run.dir=<run folder> or ckpt_path=<checkpoint>, or use resume=auto to start fresh"
        )
    if run_dir is not None:
        print(f"resuming the run in {run_dir}", file=sys.stderr)
    return run_dir


def resume_checkpoint(ckpt_path: str | None, resume: str, run_dir: Path) -> Path | None:
    """The checkpoint to continue from, or ``None`` for a fresh run.

    ``ckpt_path`` wins; otherwise ``resume`` (``true``/``auto``/``false``) looks in ``run_dir``
    (``train.py`` points the run folder at the newest earlier run of the style: ``run_dir_to_resume``).
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
    from fast_style.checkpoint_format import CHECKPOINT_KEY, TRAINING_KEYS, safe_torch_load
    from fast_style.model.networks import full_config

    checkpoint = safe_torch_load(path, "pass ckpt_path=<a last.ckpt or step_*.ckpt written by train.py>")
    missing = [key for key in TRAINING_KEYS if not isinstance(checkpoint, dict) or key not in checkpoint]
    if missing:
        raise FastStyleError(
            f"{path} cannot continue training (it lacks {', '.join(missing)}): "
            "pass a last.ckpt or step_*.ckpt written by train.py"
        )
    saved = full_config(checkpoint[CHECKPOINT_KEY].get("model", {}))
    differing = {k: (saved[k], v) for k, v in model_config.items() if k in saved and saved[k] != v}
    if differing:
        details = ", ".join(f"model.{k}={new} but the checkpoint has {old}" for k, (old, new) in differing.items())
        raise FastStyleError(
            f"{path} does not match this config ({details}): resume with the model it was trained with"
        )
    return checkpoint


def keep_csv_history(run_dir: Path, cfg: DictConfig) -> None:
    """Lightning's CSVLogger deletes an existing metrics.csv: keep it as metrics_<n>.csv when resuming."""
    if not cfg.get("logger") or "csv" not in cfg.logger:
        return
    logs = Path(cfg.logger.csv.save_dir) / str(cfg.logger.csv.name) / str(cfg.logger.csv.get("version") or "")
    current = logs / "metrics.csv"
    if current.is_file():
        index = 1 + sum(1 for _ in logs.glob("metrics_*.csv"))
        os.replace(current, logs / f"metrics_{index}.csv")
