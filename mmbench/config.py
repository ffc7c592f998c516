"""Model configurations: dataclass defaults, per-task presets, ``--set key=value`` overrides."""

from __future__ import annotations

import contextlib
import dataclasses
import typing
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from mmbench.errors import ConfigError, closest


def parse_seeds(text: str, where: str = "--seed") -> list[int]:
    """'0' -> [0]; '0,2' -> [0, 2]; '0-2' -> [0, 1, 2]. Refuses negative seeds, reversed or empty ranges and
    repeats, naming ``where`` (the flag or sweep-file key the text came from)."""
    hint = "expected a seed >= 0, a list (0,1,2) or a range (0-2)"
    seeds: list[int] = []
    for part in (p.strip() for p in str(text).split(",")):
        lo, sep, hi = part.partition("-") if "-" in part[1:] else (part, "", "")
        try:
            first, last = int(lo), int(hi if sep else lo)
        except ValueError:
            raise ConfigError(f"{where} {text!r}: {hint}") from None
        if first < 0 or last < 0:
            raise ConfigError(f"{where} {text!r}: seeds must be >= 0 ({hint})")
        if last < first:
            raise ConfigError(f"{where} {text!r}: the range {part} is reversed; write {last}-{first}")
        seeds += range(first, last + 1)
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{where} {text!r}: a seed is listed twice")
    return seeds


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


# Value ranges by key name, checked for every preset and --set value (an adapter's own keys follow the same
# names: README, "Adding a model"). (test on the key, lower bound, lower inclusive, upper bound, upper inclusive).
# A config class whose key means something else sets ``value_ranges: ClassVar[dict]`` (key -> the last four).
_RANGE_RULES: tuple[tuple[Any, float | None, bool, float | None, bool], ...] = (
    (lambda k: k in ("lr", "learning_rate") or k.endswith("_lr"), 0.0, False, None, False),
    (lambda k: k.endswith("dropout") or k.endswith("dropouts") or k == "label_smoothing", 0.0, True, 1.0, False),
    (lambda k: k in ("epochs", "patience", "iterations", "weight_decay", "grad_clip", "mu", "vm_weight",
                     "diffusion_steps", "max_hop", "restart_period") or k.startswith("max_"), 0.0, True, None, False),
    (lambda k: k == "dim" or k == "hidden" or k.endswith("_dim") or k.endswith("heads") or k == "layers"
     or k.endswith("_layers") or k.startswith("num_layers") or k.endswith("batch_size") or k == "eval_every"
     or k in ("num_negs", "qformer_blocks", "queries_per_image", "visual_codes", "fgcl_samples", "calibration_nodes"),
     1.0, True, None, False),
    (lambda k: k == "width", 0.0, True, None, False),
    (lambda k: k.endswith("temperature") or k == "score_scale", 0.0, False, None, False),
    (lambda k: k == "alpha", 0.0, False, 1.0, True),
)


def _check_range(key: str, value: Any, owner: str, config_cls: type | None = None) -> None:
    """Raise a ConfigError naming ``key`` when a numeric value is outside its range: ``config_cls.value_ranges``
    if it names the key, else the first name rule that matches."""
    values = value if isinstance(value, (list, tuple)) else [value]
    own = dict(getattr(config_cls, "value_ranges", None) or {})
    rules = [(lambda k: True, *own[key])] if key in own else _RANGE_RULES
    for rule, lo, lo_incl, hi, hi_incl in rules:
        if not rule(key):
            continue
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            low_ok = lo is None or (v >= lo if lo_incl else v > lo)
            high_ok = hi is None or (v <= hi if hi_incl else v < hi)
            if not (low_ok and high_ok):
                left = "" if lo is None else f"{'[' if lo_incl else '('}{lo:g}"
                right = "inf)" if hi is None else f"{hi:g}{']' if hi_incl else ')'}"
                raise ConfigError(f"{owner}: {key}={value!r} is out of range: expected a value in "
                                  f"{left}, {right}")
        return


CARD_MODEL_KEYS = ("features",)
"""Card ``protocol`` keys that set the same-named config key of every model that has one (e.g. the
Ele-fashion cards' ``features: clip``): the card is their single source. The value ``default`` leaves each
model's own default."""


def card_defaults(card: Any, config_cls: type) -> dict[str, Any]:
    """The card's values for ``CARD_MODEL_KEYS`` that ``config_cls`` has (``default`` values skipped), and for
    the keys a config class lists in ``task_limits``: card ``dataset.params`` (e.g. ``max_text_neighbors`` of
    wikiweb-gen) that the model must follow, so the card is their single source; a card without the key
    leaves the model's default."""
    names = {f.name for f in dataclasses.fields(config_cls)}
    protocol = getattr(card, "protocol", None) or {}
    values = {k: protocol[k] for k in CARD_MODEL_KEYS
              if k in protocol and k in names and protocol[k] != "default"}
    params = (getattr(card, "dataset", None) or {}).get("params") or {}
    values.update({k: params[k] for k in getattr(config_cls, "task_limits", ()) if k in params and k in names})
    return values


def build_config(config_cls: type, task: str | None, presets: Mapping[str, Mapping[str, Any]],
                 overrides: Mapping[str, Any], owner: str, card: Any = None) -> Any:
    """Defaults, then the card's model keys (``card_defaults``), then ``presets[task]`` (if any), then
    ``overrides``; unknown keys raise with a hint."""
    hints = typing.get_type_hints(config_cls)
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    values: dict[str, Any] = {}
    from_card = card_defaults(card, config_cls) if card is not None else {}
    for source, mapping in (("task card", from_card), ("preset", presets.get(task or "", {})), ("--set", overrides)):
        for key, value in mapping.items():
            if key not in fields:
                raise ConfigError(
                    f"{owner}: unknown config key {key!r} (from {source}).{closest(key, fields)} "
                    f"Known keys: {', '.join(sorted(fields))}"
                )
            values[key] = _coerce(key, value, hints.get(key, Any), owner)
            _check_range(key, values[key], f"{owner} ({source})", config_cls)
    return config_cls(**values)


def config_to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)
