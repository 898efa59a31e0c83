"""Stylize photos with a trained network: ``python stylize.py ckpt=... input=photo.jpg output=art.jpg``."""

from fast_style.config.cli import launch


def main(cfg) -> None:
    from fast_style.infer.stylize import stylize  # torch: imported once the config is known good

    stylize(cfg)


if __name__ == "__main__":
    launch("stylize", main)
