"""Try styles in a browser: ``python scripts/app.py [ckpt=[a.onnx,b.ckpt]] [port=7860] ...``.

Serves a Gradio page and API over every ``final.ckpt`` under ``checkpoints/`` plus the model files
passed with ``ckpt=`` (configs/app.yaml). Needs the optional extra: ``pip install -e ".[app]"``.
"""

import importlib.util
import sys

from fast_style.config.cli import launch


def main(cfg) -> None:
    from fast_style.webapp.settings import settings_from_config

    settings = settings_from_config(cfg)  # host/auth rules and the models, before Gradio and torch load
    from fast_style.webapp.ui import serve

    serve(settings)


if __name__ == "__main__":
    if importlib.util.find_spec("gradio") is None:  # before anything slow: one line, how to install it
        print('error: the web app needs Gradio, an optional extra: pip install -e ".[app]"', file=sys.stderr)
        sys.exit(2)
    launch("app", main)
