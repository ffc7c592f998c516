"""Dataset loaders, dispatched by the card's ``dataset.loader``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mmbench.errors import ConfigError, closest
from mmbench.tasks import TaskCard

Loader = Callable[[TaskCard, bool], Any]
StatusFn = Callable[[TaskCard], tuple[bool, str]]

_LOADERS: dict[str, tuple[Loader, StatusFn]] = {}


def register_loader(name: str, status: StatusFn) -> Callable[[Loader], Loader]:
    def deco(fn: Loader) -> Loader:
        _LOADERS[name] = (fn, status)
        return fn
    return deco


def _entry(card: TaskCard) -> tuple[Loader, StatusFn]:
    from mmbench.data import kg, synth_kg  # noqa: F401  (registers loaders)
    name = card.dataset["loader"]
    if name not in _LOADERS:
        raise ConfigError(f"{card.path}: unknown dataset loader {name!r}.{closest(name, _LOADERS)} "
                          f"Known loaders: {', '.join(sorted(_LOADERS))}")
    return _LOADERS[name]


def load_task_data(card: TaskCard, verify: bool = True) -> Any:
    """Load a task's data. ``verify=False`` runs on data whose counts differ from the published ones."""
    return _entry(card)[0](card, verify)


def data_status(card: TaskCard) -> tuple[bool, str]:
    """(present, one-line detail) without loading the data."""
    return _entry(card)[1](card)
