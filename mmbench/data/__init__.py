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
    from mmbench.data import elefashion, elefashion_prepare, folder, kg, prepare, synth_graph, synth_kg, wikiweb  # noqa: F401 (loaders and preparers register themselves)
    name = card.dataset["loader"]
    if name not in _LOADERS:
        raise ConfigError(f"{card.path}: unknown dataset loader {name!r}.{closest(name, _LOADERS)} "
                          f"Known loaders: {', '.join(sorted(_LOADERS))}")
    return _LOADERS[name]


Preparer = Callable[[TaskCard, Any, bool, bool], dict]
_PREPARERS: dict[str, Preparer] = {}


def register_preparer(loader: str) -> Callable[[Preparer], Preparer]:
    """``mmbench data prepare TASK --from DIR`` for tasks whose card uses ``loader``.

    A preparer ``fn(card, src_dir, link, verify) -> manifest dict`` gathers and verifies the release under
    ``$MMBENCH_DATA`` (staging first, so a failed prepare leaves earlier data untouched).
    """

    def deco(fn: Preparer) -> Preparer:
        _PREPARERS[loader] = fn
        return fn
    return deco


def prepare_task_data(card: TaskCard, src: Any, link: bool = False, verify: bool = True) -> dict:
    """``verify=False`` (``--unverified-data``) prepares data whose counts differ from the card's; the manifest
    records ``verified: false`` and every run on it is marked unverified."""
    _entry(card)  # imports the loader modules, which register their preparers
    loader = card.dataset["loader"]
    if loader not in _PREPARERS:
        raise ConfigError(f"task {card.name}: its data ({loader}) needs no preparation"
                          if loader in _NO_PREPARE else f"no prepare step for loader {loader!r}")
    return _PREPARERS[loader](card, src, link, verify)


_NO_PREPARE = ("pykeen", "synth-mmkg", "synth-gen", "synth-cls", "synth-cls-zs")


def load_task_data(card: TaskCard, verify: bool = True) -> Any:
    """Load a task's data. ``verify=False`` runs on data whose counts differ from the published ones."""
    return _entry(card)[0](card, verify)


def data_status(card: TaskCard) -> tuple[bool, str]:
    """(present, one-line detail) without loading the data."""
    return _entry(card)[1](card)
