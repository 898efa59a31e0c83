"""Stylize photos with a trained network: ``python stylize.py ckpt=... input=photo.jpg output=art.jpg``."""

import sys

import hydra
from omegaconf import DictConfig

from fast_style.cli import preflight, run_guarded
from fast_style.validation import validate_stylize_config


@hydra.main(version_base="1.3", config_path="configs", config_name="stylize")
def main(cfg: DictConfig) -> None:
    from fast_style.stylize_cli import stylize  # torch: imported only once the config is known good

    run_guarded(stylize, cfg)


if __name__ == "__main__":
    sys.argv[1:] = preflight(sys.argv[1:], "stylize", validate_stylize_config)
    main()
