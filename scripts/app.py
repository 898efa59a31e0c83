"""Try styles in a browser: ``python scripts/app.py [ckpt=[a.onnx,b.ckpt]] [port=7860] ...``.

Serves a Gradio page and API over every ``final.ckpt`` under ``checkpoints/`` plus the model files
passed with ``ckpt=`` (configs/app.yaml). Needs the optional extra: ``pip install -e ".[app]"``.
"""

import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("gradio") is None:  # before anything slow: one line, how to install it
    print('error: the web app needs Gradio, an optional extra: pip install -e ".[app]"', file=sys.stderr)
    sys.exit(2)

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from fast_style.cli import preflight, run_guarded  # noqa: E402
from fast_style.webapp.settings import settings_from_config, validate_app_config  # noqa: E402


def run(cfg: DictConfig) -> None:
    from fast_style.webapp.ui import serve  # torch and Gradio: imported once the config is known good

    serve(settings_from_config(cfg))


@hydra.main(version_base="1.3", config_path=str(Path(__file__).resolve().parents[1] / "configs"), config_name="app")
def main(cfg: DictConfig) -> None:
    run_guarded(run, cfg)


if __name__ == "__main__":
    sys.argv[1:] = preflight(sys.argv[1:], "app", validate_app_config)
    main()
