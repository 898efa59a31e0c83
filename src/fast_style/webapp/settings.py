"""``configs/app.yaml`` -> ``AppSettings``, checked before torch or Gradio is imported.

Every mistake is a ``FastStyleError`` whose message names the key, the value and the fix.
"""

from __future__ import annotations

import ipaddress
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig

from fast_style.errors import FastStyleError

MODEL_SUFFIXES = (".ckpt", ".onnx", ".pt", ".ts", ".safetensors", ".xml")  # .xml: OpenVINO IR
AUTH_ENV = "FAST_STYLE_APP_AUTH"


@dataclass(frozen=True)
class AppSettings:
    models: tuple[Path, ...]
    host: str = "127.0.0.1"
    port: int = 7860
    auth: tuple[tuple[str, str], ...] = ()
    device: str = "auto"
    precision: str = "32"
    max_upload_mb: float = 25.0
    max_megapixels: float = 16.0
    concurrency: int = 2
    max_queue: int = 32
    webcam_size: int = 384
    result_minutes: float = 10.0

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def max_pixels(self) -> int:
        return int(self.max_megapixels * 1_000_000)


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def find_models(checkpoints_dir: str | Path | None, explicit: list[str]) -> tuple[Path, ...]:
    """Every ``final.ckpt`` under ``checkpoints_dir`` (sorted) followed by the files passed explicitly."""
    found: list[Path] = []
    for item in explicit:
        path = Path(item).expanduser()
        if path.suffix.lower() not in MODEL_SUFFIXES:
            raise FastStyleError(
                f"ckpt={item} has unsupported extension {path.suffix!r}: pass .ckpt, .onnx, .pt/.ts, .safetensors or OpenVINO .xml files"
            )
        if not path.is_file():
            raise FastStyleError(f"model file {item} does not exist: check the path in ckpt=[...]")
        found.append(path)
    if checkpoints_dir not in (None, ""):
        root = Path(str(checkpoints_dir)).expanduser()
        if root.is_dir():
            found = sorted(p for p in root.rglob("final.ckpt") if p.is_file()) + found
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not unique:
        raise FastStyleError(
            f"no models to offer: no final.ckpt under {checkpoints_dir or '(checkpoints_dir=null)'} and no ckpt=; "
            "train one with train.py or pass ckpt=[model.onnx,...]"
        )
    return tuple(unique)


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple, ListConfig)):
        return [str(v) for v in value]
    return [str(value)] if str(value) else []


def parse_auth(value: Any) -> tuple[tuple[str, str], ...]:
    """``user:password`` or a list of them (``$FAST_STYLE_APP_AUTH``: comma-separated) -> pairs."""
    entries = _as_list(value)
    if not entries and os.environ.get(AUTH_ENV):
        entries = [e for e in os.environ[AUTH_ENV].split(",") if e]
    pairs = []
    for entry in entries:
        user, sep, password = entry.partition(":")
        if not sep or not user or not password:
            raise FastStyleError(
                "auth= entries must look like user:password (a non-empty name and password), "
                f"or set {AUTH_ENV}=user:password"
            )
        pairs.append((user, password))
    return tuple(pairs)


def _number(cfg: DictConfig, key: str, default: float, low: float, high: float, integer: bool = False) -> float:
    value = cfg.get(key, default)
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number) or not low <= number <= high:
        kind = "an integer" if integer else "a number"
        raise FastStyleError(f"{key}={value!r} is not allowed: use {kind} from {low:g} to {high:g}")
    if integer and number != int(number):
        raise FastStyleError(f"{key}={value!r} is not allowed: use an integer from {low:g} to {high:g}")
    return int(number) if integer else number


def settings_from_config(cfg: DictConfig, find: bool = True) -> AppSettings:
    """Check the ranges and rules of ``configs/app.yaml`` (types: ``AppConfig``); ``find=False`` skips the model search."""
    host = str(cfg.get("host", "127.0.0.1") or "")
    if not host:
        raise FastStyleError("host= is empty: use 127.0.0.1 (this machine only) or 0.0.0.0 (the network, with auth=)")
    auth = parse_auth(cfg.get("auth"))
    if not is_loopback(host) and not auth:
        raise FastStyleError(
            f"host={host} serves the app beyond this machine: pass auth=user:password "
            f"(or set {AUTH_ENV}=user:password) so that visitors must log in"
        )
    precision = str(cfg.get("precision", "32"))
    if precision.lower() not in ("32", "fp32", "float32", "bf16", "bfloat16", "16", "fp16", "float16"):
        raise FastStyleError(f"precision={precision!r} is not supported: use 32, bf16 or fp16")
    explicit = _as_list(cfg.get("ckpt"))
    models = find_models(cfg.get("checkpoints_dir"), explicit) if find else ()
    return AppSettings(
        models=models,
        host=host,
        port=_number(cfg, "port", 7860, 1, 65535, integer=True),
        auth=auth,
        device=str(cfg.get("device", "auto")),
        precision=precision,
        max_upload_mb=_number(cfg, "max_upload_mb", 25, 0.001, 4096),
        max_megapixels=_number(cfg, "max_megapixels", 16, 0.001, 400),
        concurrency=_number(cfg, "concurrency", 2, 1, 64, integer=True),
        max_queue=_number(cfg, "max_queue", 32, 1, 10000, integer=True),
        webcam_size=_number(cfg, "webcam_size", 384, 32, 4096, integer=True),
        result_minutes=_number(cfg, "result_minutes", 10, 0.1, 10080),
    )
