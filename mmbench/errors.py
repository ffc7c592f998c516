"""User-facing errors. Each says what went wrong, where, and what to do."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class MMBenchError(Exception):
    """Base class for errors the CLI prints without a traceback."""


class DataError(MMBenchError):
    """A data file is missing, malformed or inconsistent with its card."""


class ConfigError(MMBenchError):
    """A task card, model config or command-line argument is invalid."""


class AdapterError(MMBenchError):
    """A model adapter broke its protocol (wrong shape, NaN, wrong dtype...)."""


def closest(name: str, choices: Iterable[str], n: int = 3) -> str:
    """A ' Did you mean ...?' hint naming the closest choices, or ''."""
    matches = difflib.get_close_matches(name, list(choices), n=n, cutoff=0.5)
    return f" Did you mean {', '.join(repr(m) for m in matches)}?" if matches else ""
