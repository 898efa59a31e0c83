"""Quality report: ``python scripts/evaluate.py ckpt=[run_a,run_b] photos=held_out/``.

Prints a table (per model: each photo and the mean; then the photos' own figures) and writes the
full report as JSON (``out=``). Figures and their meaning: ``fast_style/quality.py``.
"""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, ListConfig

from fast_style.cli import run_guarded


def evaluate_and_report(cfg: DictConfig) -> None:
    from fast_style.evaluation import evaluate, format_table, write_report

    models = list(cfg.ckpt) if isinstance(cfg.ckpt, ListConfig) else [cfg.ckpt]
    reports, references = evaluate(
        [str(m) for m in models],
        str(cfg.photos),
        weights=cfg.weights,
        style=cfg.style,
        size=cfg.size,
        device=cfg.device,
        repeats=cfg.repeats,
    )
    print(format_table(reports, references))
    print(f"report: {write_report(reports, references, cfg.out)}")


@hydra.main(
    version_base="1.3", config_path=str(Path(__file__).resolve().parents[1] / "configs"), config_name="evaluate"
)
def main(cfg: DictConfig) -> None:
    run_guarded(evaluate_and_report, cfg)


if __name__ == "__main__":
    sys.exit(main())
