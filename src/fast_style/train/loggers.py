"""Experiment loggers: a wandb logger that never prompts or hangs, and run naming for sweeps."""

from __future__ import annotations

import netrc
import os
import socket
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

DEFAULT_WANDB_HOST = "https://api.wandb.ai"


def wandb_api_key_available(environ: dict[str, str] | None = None) -> bool:
    """True when wandb would find credentials without asking: env variables or a .netrc entry.

    Mirrors wandb's own lookup (``WANDB_API_KEY``, ``WANDB_IDENTITY_TOKEN_FILE``, then the .netrc
    named by ``NETRC`` or ``~/.netrc`` for the host of ``WANDB_BASE_URL``) without importing wandb's
    private modules, whose layout changes between releases.
    """
    env = os.environ if environ is None else environ
    if env.get("WANDB_API_KEY") or env.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urlsplit(env.get("WANDB_BASE_URL") or DEFAULT_WANDB_HOST).netloc
    candidates = [Path(env["NETRC"]).expanduser()] if env.get("NETRC") else []
    home = env.get("HOME")
    if home and not candidates:
        candidates = [Path(home) / ".netrc", Path(home) / "_netrc"]
    for path in candidates:
        try:
            if path.is_file() and netrc.netrc(path).authenticators(host):
                return True
        except (netrc.NetrcParseError, OSError):
            continue
    return False


def wandb_host_reachable(timeout: float = 3.0, environ: dict[str, str] | None = None) -> bool:
    """One TCP connect to the wandb server with a short timeout (only called when a key exists)."""
    env = os.environ if environ is None else environ
    parts = urlsplit(env.get("WANDB_BASE_URL") or DEFAULT_WANDB_HOST)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def choose_wandb_mode(mode: str | None, probe_timeout: float = 3.0) -> tuple[str | None, str | None]:
    """``(mode to pass to wandb.init, reason printed to the user)``.

    An explicit ``mode`` or ``WANDB_MODE`` wins (``None`` lets wandb read the variable itself).
    Otherwise: no API key -> offline (wandb would prompt for a login); a key but the server is
    unreachable -> offline (wandb would retry until its init timeout).
    """
    if mode:
        return mode, None
    if os.environ.get("WANDB_MODE"):
        return None, None
    if not wandb_api_key_available():
        return "offline", "wandb: no API key (WANDB_API_KEY or `wandb login`), logging offline"
    if not wandb_host_reachable(probe_timeout):
        return "offline", "wandb: server unreachable, logging offline"
    return "online", None


def swept_overrides(job_overrides: list[str], command_line: list[str]) -> list[str]:
    """The job's overrides that the sweep chose: keys swept on the command line (``k=a,b``) or
    not on it at all (a sweep config's ``hydra.sweeper.params``, an Optuna sweeper's choices)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    try:
        given = parser.parse_overrides([a for a in command_line if not a.startswith("-")])
        job = [(text, parser.parse_override(text).key_or_group) for text in job_overrides]
    except Exception:  # an odd command line: fall back to comparing the text
        return [o for o in job_overrides if o not in command_line]
    fixed = {o.key_or_group for o in given if not o.is_sweep_override()}
    return [text for text, key in job if key not in fixed]


def sweep_job_naming(argv: list[str] | None = None) -> tuple[str | None, str | None]:
    """``(group, name)`` for a Hydra multirun job, ``(None, None)`` outside multirun.

    group: the sweep directory's name (one per ``-m`` invocation); name: the job number and the
    overrides the sweep chose for it, e.g. ``1: loss.style_weight=0.3``.
    """
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if not HydraConfig.initialized():
            return None, None
        hydra_cfg = HydraConfig.get()
    except (ImportError, ValueError):
        return None, None
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return None, None
    chosen = swept_overrides(list(hydra_cfg.overrides.task), sys.argv[1:] if argv is None else argv)
    return Path(hydra_cfg.sweep.dir).name, f"{hydra_cfg.job.num}: {' '.join(chosen)}".rstrip(": ")


def wandb_logger(
    save_dir: str,
    project: str = "fast-style",
    mode: str | None = None,
    init_timeout: float = 60.0,
    probe_timeout: float = 3.0,
    group: str | None = None,
    name: str | None = None,
    **kwargs: Any,
):
    """A Lightning ``WandbLogger`` writing under ``<save_dir>/wandb`` that works without a login.

    Args:
        mode: ``online`` | ``offline`` | ``disabled``; ``None`` picks one (see ``choose_wandb_mode``).
        init_timeout: seconds ``wandb.init`` may wait for its service before failing (not forever).
        group, name: default to the sweep directory and the job's overrides in a Hydra multirun.
        kwargs: passed to ``WandbLogger`` / ``wandb.init`` (entity, tags, log_model, ...).
    """
    import wandb
    from pytorch_lightning.loggers import WandbLogger

    chosen_mode, reason = choose_wandb_mode(mode, probe_timeout)
    sweep_group, sweep_name = sweep_job_naming()
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    if reason:
        print(f"{reason}; upload later with `wandb sync {Path(save_dir) / 'wandb'}/offline-run-*`", file=sys.stderr)
    init: dict[str, Any] = {"settings": wandb.Settings(init_timeout=init_timeout)}
    if chosen_mode:
        init["mode"] = chosen_mode
    logger = WandbLogger(
        save_dir=str(save_dir),
        project=project,
        group=group or sweep_group,
        name=name or sweep_name,
        **init,
        **kwargs,
    )
    if logger._wandb_init.get("anonymous", False) is None:  # Lightning passes it; wandb warns it is a no-op
        logger._wandb_init.pop("anonymous")
    return logger


def finish_loggers(loggers) -> None:
    """Close wandb runs so the next job of a multirun (same process) starts its own run."""
    from pytorch_lightning.loggers import WandbLogger

    for logger in loggers or ():
        if isinstance(logger, WandbLogger) and getattr(logger, "_experiment", None) is not None:
            logger.experiment.finish()
