"""Model configurations: dataclass defaults, per-task presets, ``--set key=value`` overrides."""

from __future__ import annotations

import contextlib
import dataclasses
import typing
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from mmbench.errors import ConfigError, closest


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """``["lr=1e-3", "use_fgcl=false"]`` -> ``{"lr": 0.001, "use_fgcl": False}`` (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--set {pair!r}: expected key=value, e.g. --set lr=0.001")
        key, raw = pair.split("=", 1)
        key = key.strip()
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        out[key] = value
    return out


def _coerce(name: str, value: Any, annotation: Any, owner: str) -> Any:
    """Convert ``value`` to the field's declared scalar type, or raise a ConfigError."""
    if isinstance(annotation, str):
        annotation = {"int": int, "float": float, "bool": bool, "str": str}.get(annotation, Any)
    origin = typing.get_origin(annotation)
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None:
            return None
        annotation = args[0] if len(args) == 1 else Any
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{owner}: {name} must be true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise ConfigError(f"{owner}: {name} must be an integer, got {value!r}")
        return int(value)
    if annotation is float:
        if isinstance(value, str):  # YAML reads '1e-3' as a string
            with contextlib.suppress(ValueError):
                value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{owner}: {name} must be a number, got {value!r}")
        return float(value)
    if annotation is str and not isinstance(value, str):
        return str(value)
    return value


def build_config(config_cls: type, task: str | None, presets: Mapping[str, Mapping[str, Any]],
                 overrides: Mapping[str, Any], owner: str) -> Any:
    """Defaults, then ``presets[task]`` (if any), then ``overrides``; unknown keys raise with a hint."""
    hints = typing.get_type_hints(config_cls)
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    values: dict[str, Any] = {}
    for source, mapping in (("preset", presets.get(task or "", {})), ("--set", overrides)):
        for key, value in mapping.items():
            if key not in fields:
                raise ConfigError(
                    f"{owner}: unknown config key {key!r} (from {source}).{closest(key, fields)} "
                    f"Known keys: {', '.join(sorted(fields))}"
                )
            values[key] = _coerce(key, value, hints.get(key, Any), owner)
    return config_cls(**values)


def config_to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)
