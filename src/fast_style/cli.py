"""What the ``train.py`` / ``stylize.py`` entry points share: config checks and one-line errors."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from omegaconf import OmegaConf

from fast_style.errors import FastStyleError

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("style_stem"):
        OmegaConf.register_new_resolver("style_stem", lambda path: Path(str(path)).stem)


def fail(message: str) -> None:
    """Print ``error: message`` as one line on stderr and exit with status 2."""
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    sys.exit(2)


def check_group_choices(argv: list[str], config_dir: Path = CONFIG_DIR) -> None:
    """Reject ``group=unknown`` overrides with one line listing the options.

    Hydra itself would print a multi-line report; users mistype style names often enough to
    deserve a short answer.
    """
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        key, value = arg.split("=", 1)
        key = key.lstrip("+~")
        group = config_dir / key
        if "." in key or "/" in key or not group.is_dir():
            continue
        options = sorted(p.stem for p in group.glob("*.yaml"))
        for choice in value.split(","):  # multirun lists: style=a,b
            if choice and choice != "null" and choice not in options:
                fail(
                    f"unknown {key} {choice!r}: choose one of {', '.join(options)} (or add configs/{key}/{choice}.yaml)"
                )


def run_guarded(function: Callable, *args):
    """Run ``function(*args)``, turning a ``FastStyleError`` into a one-line message and exit 2."""
    try:
        return function(*args)
    except FastStyleError as exc:
        fail(str(exc))
