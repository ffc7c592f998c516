"""Task cards (YAML in tasks/), the task registry and task fingerprints.

A card declares a task: name, family, dataset (loader + where the data comes from), splits,
metrics, protocol parameters and a version. A task's fingerprint is
``sha256(card_hash + data_hash)``: the card as parsed, plus the split data actually loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mmbench import paths
from mmbench.errors import ConfigError, closest
from mmbench.io import canonical_json, sha256_hex
from mmbench.jobs import family_names

REQUIRED_KEYS = ("name", "version", "family", "description", "dataset", "splits", "metrics", "main_metric")


@dataclass(frozen=True)
class TaskCard:
    name: str
    version: int
    family: str
    description: str
    dataset: dict[str, Any]
    splits: tuple[str, ...]
    metrics: tuple[str, ...]
    main_metric: str
    protocol: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def card_hash(self) -> str:
        return sha256_hex(canonical_json(self.raw))

    def fingerprint(self, data_hash: str) -> str:
        return sha256_hex(self.card_hash, data_hash)

    def describe(self) -> dict[str, Any]:
        """The card as recorded in result files."""
        return {"name": self.name, "version": self.version, "family": self.family,
                "card_hash": self.card_hash, "card": self.raw}


def parse_card(raw: Any, source: str) -> TaskCard:
    """Validate a parsed YAML mapping; errors name the file and the offending key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a task card must be a YAML mapping, got {type(raw).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in raw]
    if missing:
        raise ConfigError(f"{source}: missing required key(s) {', '.join(missing)}; "
                          f"a card needs {', '.join(REQUIRED_KEYS)} (see README 'Adding a task')")
    families = family_names()
    if raw["family"] not in families:
        raise ConfigError(f"{source}: family {raw['family']!r} is not one of {', '.join(families)}."
                          f"{closest(str(raw['family']), families)}")
    if not isinstance(raw["dataset"], dict) or "loader" not in raw["dataset"]:
        raise ConfigError(f"{source}: 'dataset' must be a mapping with a 'loader' key")
    if not isinstance(raw["version"], int):
        raise ConfigError(f"{source}: 'version' must be an integer, got {raw['version']!r}")
    for key in ("splits", "metrics"):
        if not isinstance(raw[key], list) or not all(isinstance(x, str) for x in raw[key]):
            raise ConfigError(f"{source}: '{key}' must be a list of names, e.g. [mrr, hits@10]")
    if raw["main_metric"] not in raw["metrics"]:
        raise ConfigError(f"{source}: main_metric {raw['main_metric']!r} is not listed in 'metrics'")
    protocol = raw.get("protocol") or {}
    if not isinstance(protocol, dict):
        raise ConfigError(f"{source}: 'protocol' must be a mapping")
    return TaskCard(name=str(raw["name"]), version=raw["version"], family=raw["family"],
                    description=str(raw["description"]).strip(), dataset=dict(raw["dataset"]),
                    splits=tuple(raw["splits"]), metrics=tuple(raw["metrics"]),
                    main_metric=raw["main_metric"], protocol=dict(protocol),
                    path=Path(source) if source else None, raw=raw)


def load_card(path: Path) -> TaskCard:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"task card {path} does not exist") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    card = parse_card(raw, str(path))
    if path.stem != card.name:
        raise ConfigError(f"{path}: the file name must match the card's name ({card.name}.yaml)")
    return card


def scan_cards() -> tuple[dict[str, TaskCard], dict[str, ConfigError]]:
    """Every card in the task directories: (usable cards by name, broken cards by file stem with their error).

    A broken card (bad YAML, missing keys, ...) never hides the others; only a command that names it fails.
    The first directory wins on name clashes."""
    cards: dict[str, TaskCard] = {}
    broken: dict[str, ConfigError] = {}
    for d in paths.task_dirs():
        if not d.is_dir():
            continue
        for p in sorted([*d.glob("*.yaml"), *d.glob("*.yml")]):
            try:
                card = load_card(p)
            except ConfigError as e:
                broken.setdefault(p.stem, e)
                continue
            cards.setdefault(card.name, card)
    return cards, {stem: e for stem, e in broken.items() if stem not in cards}


def all_cards() -> dict[str, TaskCard]:
    """Every usable card, by name (``scan_cards`` also reports the broken ones)."""
    return scan_cards()[0]


def get_card(name_or_path: str) -> TaskCard:
    """A task by registered name, or a card file given as a path ending in .yaml/.yml."""
    if name_or_path.endswith((".yaml", ".yml")):
        return load_card(Path(name_or_path))
    cards, broken = scan_cards()
    if name_or_path in broken:
        raise ConfigError(f"task {name_or_path!r} cannot be used: {broken[name_or_path]}")
    if name_or_path not in cards:
        raise ConfigError(f"unknown task {name_or_path!r}.{closest(name_or_path, [*cards, *broken])} "
                          f"Run `mmbench list tasks` to see the registered tasks.")
    return cards[name_or_path]
