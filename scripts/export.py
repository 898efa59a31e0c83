"""Export a checkpoint: ``python scripts/export.py ckpt=final.ckpt formats=[onnx,torchscript,safetensors]``.

Each file is verified against eager PyTorch right after writing and the check is printed.
"""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, ListConfig

from fast_style.cli import run_guarded
from fast_style.export import export_checkpoint


@hydra.main(version_base="1.3", config_path=str(Path(__file__).resolve().parents[1] / "configs"), config_name="export")
def main(cfg: DictConfig) -> None:
    formats = list(cfg.formats) if isinstance(cfg.formats, ListConfig) else str(cfg.formats)
    run_guarded(export_checkpoint, cfg.ckpt, formats, cfg.out_dir)


if __name__ == "__main__":
    sys.exit(main())
