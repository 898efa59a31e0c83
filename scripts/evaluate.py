"""Quality report: ``python scripts/evaluate.py ckpt=[run_a,run_b] photos=held_out/``.

Prints a table (per model: each photo and the mean; then the photos' own figures) and writes the
full report as JSON (``out=``). Figures and their meaning: ``fast_style/quality.py``.
"""

from fast_style.config.cli import launch


def main(cfg) -> None:
    from omegaconf import ListConfig

    from fast_style.evaluation import evaluate, format_table, write_report

    models = list(cfg.ckpt) if isinstance(cfg.ckpt, ListConfig) else [cfg.ckpt]
    reports, references = evaluate(
        [str(m) for m in models],
        cfg.photos,
        weights=cfg.weights,
        style=cfg.style,
        size=cfg.size,
        device=cfg.device,
        repeats=cfg.repeats,
        flicker_frames=cfg.flicker_frames,
        video=cfg.video,
        video_frames=cfg.video_frames,
        video_blend=cfg.video_blend,
    )
    print(format_table(reports, references))
    print(f"report: {write_report(reports, references, cfg.out)}")


if __name__ == "__main__":
    launch("evaluate", main)
