"""Checking a composed config against ``schema``: one line naming the key, the value and what is allowed.

Hydra composition already enforces key names and types (the schema is a structured config);
``validate`` applies the schema's value rules (ranges, choices, existing paths, rules across keys)
and ``explain`` turns OmegaConf's type errors into the same one-line form. Nothing here imports
torch, so a bad command line fails in well under a second.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException, ValidationError

from fast_style.errors import FastStyleError

_UNSET = object()
_PHRASES = {int: "an integer", float: "a number", bool: "true or false", list: "a list"}


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _base_type(annotation: Any) -> Any:
    """``int | None`` -> ``int``; ``list[str]`` -> ``list``."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    return typing.get_origin(annotation) or annotation


def allowed_text(schema: type, name: str) -> str:
    """What ``schema.name`` allows, as written after "use": the type's phrase and the rule's text."""
    fields = {f.name: f for f in dataclasses.fields(schema)}
    phrase = _PHRASES.get(_base_type(typing.get_type_hints(schema).get(name)), "")
    rule = fields[name].metadata.get("allowed", "") if name in fields else ""
    return f"{phrase} {rule}".strip() or "a valid value"


class Node:
    """One config node as the schema's rules see it: typed values by (dotted) name, one-line failures."""

    def __init__(self, root: DictConfig, prefix: str = "") -> None:
        self.root, self.prefix = root, prefix

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def get(self, name: str, default: Any = _UNSET) -> Any:
        """The resolved value of ``name`` (lists and dicts as plain containers)."""
        key = self.key(name)
        try:
            value = OmegaConf.select(self.root, key, default=_UNSET, throw_on_missing=False)
        except OmegaConfBaseException as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise FastStyleError(f"{key} cannot be resolved ({first}): fix the value or the interpolation") from None
        if value is _UNSET or (isinstance(value, str) and value == "???"):
            if default is _UNSET:
                raise FastStyleError(f"{key} is required but not set: pass {key}=...")
            return default
        return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value

    def fail(self, name: str, value: Any, allowed: str) -> typing.NoReturn:
        raise FastStyleError(f"{self.key(name)}={_show(value)} is not allowed: use {allowed}")

    def refuse(self, name: str, value: Any, reason: str) -> typing.NoReturn:
        raise FastStyleError(f"{self.key(name)}={_show(value)} is not allowed: {reason}")

    def error(self, message: str) -> typing.NoReturn:
        raise FastStyleError(message)

    def exists(self, name: str, kind: str, hint: str) -> Path:
        value = self.get(name)
        if not isinstance(value, str) or not value:
            self.fail(name, value, f"the path of an existing {kind}")
        path = Path(value).expanduser()
        if not (path.is_dir() if kind == "folder" else path.is_file()):
            self.error(f"{self.key(name)}={value} does not exist or is not a {kind}: {hint}")
        return path


def validate(cfg: DictConfig, schema: type | None = None) -> DictConfig:
    """Check ``cfg`` (composed, or a plain config to be typed as ``schema``) against its schema's
    rules; raise ``FastStyleError`` on the first bad value. Returns the typed config."""
    if schema is not None and OmegaConf.get_type(cfg) is not schema:
        try:
            cfg = OmegaConf.merge(OmegaConf.structured(schema), cfg)
        except OmegaConfBaseException as exc:
            raise FastStyleError(explain(exc)) from None
    _check(cfg, "", cfg)
    return cfg


def _check(node: DictConfig, prefix: str, root: DictConfig) -> None:
    schema = OmegaConf.get_type(node)
    if not dataclasses.is_dataclass(schema):
        return  # a free-form node (loggers, scheduler): its consumer's own arguments
    view, hints = Node(root, prefix), typing.get_type_hints(schema)
    for spec in dataclasses.fields(schema):
        name = spec.name
        if OmegaConf.is_missing(node, name):
            view.get(name)  # raises "required but not set"
        if dataclasses.is_dataclass(_base_type(hints[name])) or hints[name] is Any:
            child = node.get(name)
            if isinstance(child, DictConfig):
                _check(child, f"{prefix}{name}.", root)
            continue
        if "exists" in spec.metadata:
            if view.get(name) is not None:
                view.exists(name, spec.metadata["exists"], spec.metadata["hint"])
        elif spec.metadata.get("check") is not None:
            value = view.get(name)
            if value is None:
                continue  # allowed exactly where the type is optional (composition checked that)
            invalid_number = isinstance(value, float) and not math.isfinite(value)
            if invalid_number or not spec.metadata["check"](value):
                view.fail(name, value, allowed_text(schema, name))
    cross_check = getattr(schema, "cross_check", None)
    if cross_check is not None:
        cross_check(view)


def explain(exc: OmegaConfBaseException) -> str:
    """OmegaConf's multi-line type error -> ``key=value is not allowed: use <what the schema allows>``."""
    key = getattr(exc, "full_key", None) or getattr(exc, "key", None)
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if not isinstance(exc, ValidationError) or key is None:
        return f"{key or 'config'}: {first}"
    schema, name = getattr(exc, "object_type", None), getattr(exc, "key", None)
    if dataclasses.is_dataclass(schema) and isinstance(name, str):
        return f"{key}={_show(exc.value)} is not allowed: use {allowed_text(schema, name)}"
    return f"{key}={_show(exc.value)} is not allowed: {first}"


def known_keys(exc: OmegaConfBaseException) -> list[str]:
    """The keys next to the unknown one an OmegaConf key error names."""
    schema = getattr(exc, "object_type", None)
    if dataclasses.is_dataclass(schema):
        return sorted(f.name for f in dataclasses.fields(schema))
    parent = getattr(exc, "parent_node", None)
    return sorted(str(k) for k in parent.keys()) if isinstance(parent, DictConfig) else []
