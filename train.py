"""Train a fast style network: ``python train.py style=starry_night`` (see README for overrides)."""

import sys

import hydra
from omegaconf import DictConfig

from fast_style.cli import check_group_choices, register_resolvers, run_guarded
from fast_style.training import train


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float:
    # The returned loss lets Hydra sweeper plugins (Optuna, Ax) optimize over runs.
    return run_guarded(train, cfg)


if __name__ == "__main__":
    check_group_choices(sys.argv[1:])
    register_resolvers()
    main()
