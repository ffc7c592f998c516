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


def failure_summary(exc: BaseException) -> str:
    """One line for an unexpected exception: its type and message, and the innermost frame of model code
    (an adapter file, ``baselines/`` or ``mmbench/models/``) it passed through, else its innermost frame."""
    import os
    import sysconfig
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    here = os.path.dirname(os.path.abspath(__file__))
    libraries = {sysconfig.get_paths()[k] for k in ("stdlib", "purelib", "platlib")}

    def is_model_code(path: str) -> bool:
        path = os.path.abspath(path)
        if any(path.startswith(lib + os.sep) for lib in libraries):
            return False
        return not path.startswith(here + os.sep) or path.startswith(os.path.join(here, "models") + os.sep)

    chosen = next((f for f in reversed(frames) if is_model_code(f.filename)), frames[-1] if frames else None)
    where = f" in {chosen.name}() at {chosen.filename}:{chosen.lineno}" if chosen else ""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {message}{where}"


def closest(name: str, choices: Iterable[str], n: int = 3) -> str:
    """A ' Did you mean ...?' hint naming the closest choices, or ''."""
    matches = difflib.get_close_matches(name, list(choices), n=n, cutoff=0.5)
    return f" Did you mean {', '.join(repr(m) for m in matches)}?" if matches else ""
