"""Running a command: compose its config once, check it, run it; every mistake is one line.

``launch(name, task)`` is what ``train.py``, ``stylize.py`` and every script under ``scripts/`` call.
For one run it composes ``configs/<name>.yaml`` with the command line's ``key=value`` overrides,
validates the result against ``schema`` and hands that same config to Hydra's job runner (run
folder, ``.hydra/`` files, logging), so the config is composed once and checked before torch is
imported. Hydra's own flags (``--help``, ``--cfg job``, ``-m`` sweeps, ...) go to ``hydra.main``
unchanged; each sweep job is validated as it starts.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

from omegaconf import DictConfig, open_dict

from fast_style.config import CONFIG_DIR, schema
from fast_style.config.validate import explain, known_keys, validate
from fast_style.errors import FastStyleError

# Flags that make Hydra do something other than one run of the composed config: leave those to it.
_HYDRA_FLAGS = {"--help", "-h", "--hydra-help", "--info", "-i", "--cfg", "-c", "--package", "-p", "--resolve"}
_HYDRA_FLAGS |= {"--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd", "--shell-completion", "-sc"}
_HYDRA_FLAGS |= {"--multirun", "-m"}


def fail(message: str) -> NoReturn:
    """Print ``error: message`` as one line on stderr and exit with status 2."""
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    sys.exit(2)


def run_guarded(function: Callable, *args) -> Any:
    """Run ``function(*args)``, turning a ``FastStyleError`` into a one-line message and exit 2."""
    try:
        return function(*args)
    except FastStyleError as exc:
        fail(str(exc))


def _uses_group(config_name: str, key: str) -> bool:
    """Whether ``configs/<config_name>.yaml`` has ``key`` in its defaults list (a config group)."""
    text = (CONFIG_DIR / f"{config_name}.yaml").read_text()
    return bool(re.search(rf"^\s*-\s*(override\s+)?{re.escape(key)}\s*:", text, re.M))


def split_plain_keys(config_name: str, overrides: list[str]) -> tuple[list[str], dict[str, Any]]:
    """Take out ``key=value`` overrides whose key is named like a folder of ``configs/`` but is a
    plain key of this command (``style=`` of ``stylize.py``, ``scripts/export.py`` and
    ``scripts/evaluate.py``): Hydra would take it for a config group and refuse it. Returns the
    overrides left for Hydra and ``{key: parsed value}`` (lists and quoting as Hydra parses them)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    kept, plain = [], {}
    for override in overrides:
        key = override.split("=", 1)[0]
        if "=" in override and not key.startswith(("-", "+", "~")) and "." not in key and "/" not in key:
            if (CONFIG_DIR / key).is_dir() and not _uses_group(config_name, key):
                parsed = OverridesParser.create().parse_overrides([override])[0]
                value = parsed.value()
                # a,b (a sweep to Hydra, which runs one job here): the list [a, b]
                plain[key] = list(value.list) if hasattr(value, "list") else value
                continue
        kept.append(override)
    return kept, plain


def _set_plain_keys(cfg: DictConfig, plain: dict[str, Any]) -> None:
    from omegaconf.errors import OmegaConfBaseException

    for key, value in plain.items():
        if key not in cfg:
            raise FastStyleError(f"unknown config key {key!r}: this command has no {key}=")
        try:
            cfg[key] = value
        except OmegaConfBaseException as exc:
            raise FastStyleError(explain(exc)) from None


def check_group_choices(argv: list[str], config_name: str | None = None) -> None:
    """Reject ``group=unknown`` overrides with one line listing the options.

    Hydra itself would print a multi-line report; users mistype style names often enough to
    deserve a short answer. Only the groups ``configs/<config_name>.yaml`` uses count: in
    ``stylize.py``, ``style=`` is a plain key (a multi-style model's style or blend).
    """
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        key, value = arg.split("=", 1)
        key = key.lstrip("+~")
        group = CONFIG_DIR / key
        if "." in key or "/" in key or not group.is_dir():
            continue
        if config_name and not _uses_group(config_name, key):
            continue  # not a group of this command
        options = sorted(p.stem for p in group.glob("*.yaml"))
        for choice in value.split(","):  # multirun lists: style=a,b
            if choice and choice != "null" and choice not in options:
                raise FastStyleError(
                    f"unknown {key} {choice!r}: choose one of {', '.join(options)} (or add configs/{key}/{choice}.yaml)"
                )


@contextmanager
def _hydra(config_name: str) -> Iterator[Any]:
    """Hydra initialized on ``CONFIG_DIR`` (schemas registered); yields its ``Hydra`` object."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    with initialize_config_dir(config_dir=str(CONFIG_DIR), job_name=config_name, version_base="1.3"):
        yield GlobalHydra.instance().hydra


def _compose(hydra: Any, config_name: str, overrides: list[str], configure_logging: bool = False) -> DictConfig:
    """Compose ``config_name`` with ``overrides`` (hydra node included); one-line ``FastStyleError``s.

    Hydra reports an unknown key (``foo=1``), a wrong type or a malformed override as a multi-line
    block with a hint to set HYDRA_FULL_ERROR; users get ``error: <what> ...: <fix>`` instead.
    """
    from hydra.errors import HydraException, MissingConfigException, OverrideParseException
    from hydra.types import RunMode
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

    try:
        return hydra.compose_config(
            config_name, overrides, run_mode=RunMode.RUN, with_log_configuration=configure_logging
        )
    except OverrideParseException as exc:
        bad = _first_unparsable(overrides)
        first = str(exc).splitlines()[0] if str(exc) else "syntax error"
        raise FastStyleError(
            f"cannot parse the override {bad!r} ({first}): write key=value, quoting values with spaces or commas"
        ) from None
    except MissingConfigException as exc:
        raise FastStyleError(f"{' '.join(str(exc).split())}: check configs/ for the available options") from None
    except HydraException as exc:
        cause = exc.__cause__
        unknown = re.search(r"Could not (?:override|append to|delete from) '([^']+)'", str(exc))
        if unknown and isinstance(cause, (ConfigAttributeError, ConfigKeyError)):
            name = unknown.group(1)
            value = next((o.split("=", 1)[1] for o in overrides if o.lstrip("+~").split("=", 1)[0] == name), "")
            parent = name.rsplit(".", 1)[0] if "." in name else "the top level"
            known = known_keys(cause)
            raise FastStyleError(
                f"unknown config key {name!r} (in {name}={value}): check the spelling"
                + (f"; {parent} has {', '.join(known)}" if known else "")
                + f" (or add a new key with +{name}={value})"
            ) from None
        if isinstance(cause, OmegaConfBaseException):
            raise FastStyleError(explain(cause)) from None
        detail = f" ({' '.join(str(cause).split())})" if cause else ""
        raise FastStyleError(f"bad override: {' '.join(str(exc).split())}{detail}") from None


def _first_unparsable(overrides: list[str]) -> str:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for override in overrides:
        try:
            parser.parse_overrides([override])
        except Exception:
            return override
    return " ".join(overrides)


def compose(config_name: str, overrides: list[str] = ()) -> DictConfig:
    """``configs/<config_name>.yaml`` with ``overrides``, without the hydra node (not validated)."""
    overrides, plain = split_plain_keys(config_name, list(overrides))
    with _hydra(config_name) as hydra:
        cfg = _compose(hydra, config_name, overrides)
    with open_dict(cfg):
        del cfg["hydra"]
    _set_plain_keys(cfg, plain)
    return cfg


def load_config(config_name: str, overrides: list[str] = ()) -> DictConfig:
    """``compose`` and ``validate``: the config a command would run with, or a ``FastStyleError``."""
    return validate(compose(config_name, overrides))


def launch(
    config_name: str,
    task: Callable[[DictConfig], Any],
    run_dir: Callable[[DictConfig, list[str]], Path | None] | None = None,
    argv: list[str] | None = None,
    config_schema: type | None = None,
) -> Any:
    """Run ``task`` on the validated ``configs/<config_name>.yaml`` + command line; returns its result.

    ``run_dir(cfg, overrides)`` may name an existing folder for this run (``train.py``'s resume).
    ``config_schema``: the schema of a command that declares its own (``schema/<config_name>``).
    ``FastStyleError`` anywhere, from a typo to the task itself, ends as one line and exit status 2.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    schema.register({config_name: config_schema} if config_schema else None)
    try:
        check_group_choices(argv, config_name)
        if {arg.split("=", 1)[0] for arg in argv if arg.startswith("-")} & _HYDRA_FLAGS:
            return _hydra_main(config_name, task, argv)
        argv, plain = split_plain_keys(config_name, argv)
        with _hydra(config_name) as hydra:
            cfg = _compose(hydra, config_name, argv, configure_logging=True)
            _set_plain_keys(cfg, plain)
            validate(cfg)
            folder = run_dir(cfg, argv) if run_dir is not None else None
            if folder is not None:
                cfg.hydra.run.dir = str(folder)
            return _run(hydra, config_name, cfg, lambda job_cfg: run_guarded(task, job_cfg))
    except FastStyleError as exc:
        fail(str(exc))


def _run(hydra: Any, config_name: str, cfg: DictConfig, task: Callable[[DictConfig], Any]) -> Any:
    """What ``hydra.main`` does for one run, on the config composed above: run folder, ``.hydra/``
    files, job logging, ``HydraConfig``; then ``task(cfg without the hydra node)``."""
    from hydra._internal.callbacks import Callbacks
    from hydra.core.utils import run_job
    from hydra.types import HydraContext, RunMode

    cfg.hydra.mode = RunMode.RUN
    callbacks = Callbacks(cfg)
    callbacks.on_run_start(config=cfg, config_name=config_name)
    result = run_job(
        hydra_context=HydraContext(config_loader=hydra.config_loader, callbacks=callbacks),
        task_function=task,
        config=cfg,
        job_dir_key="hydra.run.dir",
        job_subdir_key=None,
    )
    callbacks.on_run_end(config=cfg, config_name=config_name, job_return=result)
    return result.return_value  # re-raises what the task raised


def _hydra_main(config_name: str, task: Callable[[DictConfig], Any], argv: list[str]) -> Any:
    """Hydra's own command line (help, --cfg, sweeps); every job validates its config first."""
    import hydra

    sys.argv[1:] = [*argv, f"hydra.job.name={config_name}"]

    def job(cfg: DictConfig) -> Any:
        return run_guarded(lambda: task(validate(cfg)))

    return hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name=config_name)(job)()
