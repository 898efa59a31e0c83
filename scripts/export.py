"""Export a checkpoint: ``python scripts/export.py ckpt=final.ckpt formats=[onnx,torchscript,safetensors]``
(add ``openvino`` for the OpenVINO IR, ``final.xml`` + ``final.bin``: the ``openvino`` extra).

Each file is verified against eager PyTorch right after writing and the check is printed.
"""

from fast_style.config.cli import launch


def main(cfg) -> None:
    from omegaconf import OmegaConf

    from fast_style.infer.export import export_checkpoint

    style = cfg.style if not OmegaConf.is_config(cfg.style) else list(cfg.style)
    export_checkpoint(cfg.ckpt, list(cfg.formats), cfg.out_dir, style=style)


if __name__ == "__main__":
    launch("export", main)
