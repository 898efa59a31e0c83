"""Finding earlier runs to continue, without importing torch (``train.py`` does this before Hydra starts)."""

from __future__ import annotations

from pathlib import Path


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
