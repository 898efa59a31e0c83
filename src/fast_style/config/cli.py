"""What the ``train.py`` / ``stylize.py`` entry points share: config checks and one-line errors."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

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


# Flags that make Hydra do something other than one run of the default config: leave those to it.
_HYDRA_FLAGS = {"--help", "-h", "--hydra-help", "--info", "-i", "--cfg", "-c", "--package", "-p", "--resolve"}
_HYDRA_FLAGS |= {"--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd", "--shell-completion", "-sc"}
_MULTIRUN_FLAGS = {"--multirun", "-m"}
_PLAIN_PATH = re.compile(r"^[\w./~+-]+$")  # needs no quoting in Hydra's override grammar


def compose_config(config_name: str, overrides: list[str], config_dir: Path = CONFIG_DIR) -> DictConfig:
    """Compose ``config_name`` with command-line ``overrides`` as ``hydra.main`` will, or fail with one line.

    Hydra reports an unknown key (``foo=1``) or a malformed override as a multi-line block with a
    hint to set HYDRA_FULL_ERROR; users get ``error: <what> ... : <fix>`` instead.
    """
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException, MissingConfigException, OverrideParseException

    register_resolvers()
    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
            return compose(config_name, overrides=overrides)
    except OverrideParseException as exc:
        bad = _first_unparsable(overrides)
        first = str(exc).splitlines()[0] if str(exc) else "syntax error"
        fail(f"cannot parse the override {bad!r} ({first}): write key=value, quoting values with spaces or commas")
    except MissingConfigException as exc:
        fail(f"{' '.join(str(exc).split())}: check configs/ for the available options")
    except HydraException as exc:
        message = str(exc)
        key = re.search(r"Could not (?:override|append to|delete from) '([^']+)'", message)
        if key and "not in struct" in str(exc.__cause__ or ""):
            name = key.group(1)
            value = next((o.split("=", 1)[1] for o in overrides if o.lstrip("+~").split("=", 1)[0] == name), "")
            parent = name.rsplit(".", 1)[0] if "." in name else None
            known = _known_keys(config_dir, config_name, overrides, parent)
            fail(
                f"unknown config key {name!r} (in {name}={value}): check the spelling"
                + (f"; {parent or 'the top level'} has {', '.join(known)}" if known else "")
                + f" (or add a new key with +{name}={value})"
            )
        cause = f" ({' '.join(str(exc.__cause__).split())})" if exc.__cause__ else ""
        fail(f"bad override: {' '.join(message.split())}{cause}")
    raise AssertionError("unreachable")


def _first_unparsable(overrides: list[str]) -> str:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for override in overrides:
        try:
            parser.parse_overrides([override])
        except Exception:
            return override
    return " ".join(overrides)


def _known_keys(config_dir: Path, config_name: str, overrides: list[str], parent: str | None) -> list[str]:
    """The keys next to a mistyped one, composed without the offending overrides."""
    from hydra import compose, initialize_config_dir

    groups = [o for o in overrides if "=" in o and (config_dir / o.split("=", 1)[0]).is_dir()]
    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
            cfg = compose(config_name, overrides=groups)
        node = OmegaConf.select(cfg, parent) if parent else cfg
        return sorted(str(k) for k in node.keys()) if OmegaConf.is_dict(node) else []
    except Exception:
        return []


def preflight(
    argv: list[str], config_name: str, validate: Callable[[DictConfig], None] | None = None, resume_runs: bool = False
) -> list[str]:
    """Check a command line before ``hydra.main`` runs it; return the (possibly extended) argv.

    Composes the config (one-line errors for unknown keys and bad syntax), runs ``validate`` on it
    (one line naming key, value and what is allowed), and with ``resume_runs`` turns ``resume=true``
    or ``resume=auto`` into ``hydra.run.dir=<newest run of this style with a last.ckpt>`` so that
    the resumed run keeps writing into the folder it started in. All of this happens before torch
    is imported: a typo costs well under a second.
    """
    check_group_choices(argv)
    flags = {arg.split("=", 1)[0] for arg in argv if arg.startswith("-")}
    if flags & (_HYDRA_FLAGS | _MULTIRUN_FLAGS):
        return argv  # --help, --cfg job, sweeps ...: Hydra's own behaviour
    overrides = [arg for arg in argv if not arg.startswith("-")]
    cfg = compose_config(config_name, overrides)
    from fast_style.errors import FastStyleError

    try:
        if validate is not None:
            validate(cfg)
        if resume_runs:
            return argv + _resume_run_dir(cfg, overrides)
    except FastStyleError as exc:
        fail(str(exc))
    return argv


def _resume_run_dir(cfg: DictConfig, overrides: list[str]) -> list[str]:
    """``["hydra.run.dir=<run to continue>"]`` for resume=true/auto, else ``[]``."""
    from fast_style.runs import find_run_to_resume
    from fast_style.validation import resume_mode

    mode = resume_mode(cfg)
    pinned = any(o.lstrip("+").split("=", 1)[0] in ("hydra.run.dir", "run_dir") for o in overrides)
    if mode == "false" or pinned or OmegaConf.select(cfg, "ckpt_path"):
        return []
    style_root = Path(str(cfg.output_root)).expanduser() / str(cfg.style.name)
    run_dir = find_run_to_resume(style_root)
    if run_dir is None:
        if mode == "true":
            fail(
                f"resume=true but no run under {style_root} has a last.ckpt: "
                "pass hydra.run.dir=<run folder> or ckpt_path=<checkpoint>, or use resume=auto to start fresh"
            )
        return []
    print(f"resuming the run in {run_dir}", file=sys.stderr)
    path = str(run_dir)
    return [
        f"hydra.run.dir={path}"
        if _PLAIN_PATH.match(path)
        else "hydra.run.dir='{}'".format(path.replace("\\", "\\\\").replace("'", "\\'"))
    ]
