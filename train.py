"""Train a fast style network: ``python train.py style=starry_night`` (see README for overrides)."""

from fast_style.config.cli import launch
from fast_style.train.resume import run_dir_to_resume


def main(cfg) -> float:
    from fast_style.train.training import train  # torch + Lightning: imported once the config is known good

    # The returned loss lets Hydra sweeper plugins (Optuna, Ax) optimize over runs.
    return train(cfg)


if __name__ == "__main__":
    # Composed once and checked (unknown keys, types, values, the run folder resume=true continues)
    # in a fraction of a second, before PyTorch is imported; every mistake is one line.
    launch("train", main, run_dir=run_dir_to_resume)
