"""Train a fast style network: ``python train.py style=starry_night`` (see README for overrides)."""

import sys

import hydra
from omegaconf import DictConfig

from fast_style.cli import preflight, register_resolvers, run_guarded
from fast_style.validation import validate_train_config


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float:
    from fast_style.training import train  # torch + Lightning: imported only once the config is known good

    # The returned loss lets Hydra sweeper plugins (Optuna, Ax) optimize over runs.
    return run_guarded(train, cfg)


if __name__ == "__main__":
    register_resolvers()
    # Unknown keys, wrong types, bad values and resume=true lookups are settled here, in a fraction
    # of a second and as one line, before Hydra and PyTorch start.
    sys.argv[1:] = preflight(sys.argv[1:], "train", validate_train_config, resume_runs=True)
    main()
