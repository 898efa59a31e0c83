"""Stylize photos with a trained network: ``python stylize.py ckpt=... input=photo.jpg output=art.jpg``."""

import sys

import hydra
from omegaconf import DictConfig

from fast_style.cli import check_group_choices, run_guarded
from fast_style.stylize_cli import stylize


@hydra.main(version_base="1.3", config_path="configs", config_name="stylize")
def main(cfg: DictConfig) -> None:
    run_guarded(stylize, cfg)


if __name__ == "__main__":
    check_group_choices(sys.argv[1:])
    main()
