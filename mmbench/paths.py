"""Where mmbench keeps data, caches, results and task cards."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def data_root() -> Path:
    """Prepared datasets live here: ``$MMBENCH_DATA`` or ``~/.cache/mmbench/data``."""
    env = os.environ.get("MMBENCH_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mmbench" / "data"


def cache_root() -> Path:
    """Derived artefacts (tokens, encoder outputs): ``$MMBENCH_CACHE`` or ``~/.cache/mmbench/cache``."""
    env = os.environ.get("MMBENCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mmbench" / "cache"


def use_cache_for_pystow() -> Path:
    """Point PyKEEN's dataset folder (pystow) under the mmbench cache unless ``$PYSTOW_HOME`` is set; call before
    pykeen is imported (it reads the folder at import time). Returns the folder in use."""
    os.environ.setdefault("PYSTOW_HOME", str(cache_root() / "pystow"))
    return Path(os.environ["PYSTOW_HOME"])


def results_root() -> Path:
    """Result records: ``$MMBENCH_RESULTS`` or ``./results``."""
    return Path(os.environ.get("MMBENCH_RESULTS", "results")).expanduser()


def leaderboard_root() -> Path:
    """Generated tables: ``$MMBENCH_LEADERBOARD`` or ``./leaderboard``."""
    return Path(os.environ.get("MMBENCH_LEADERBOARD", "leaderboard")).expanduser()


def task_dirs() -> list[Path]:
    """Directories searched for task cards: the bundled ``tasks/`` plus ``$MMBENCH_TASK_PATH`` (colon-separated)."""
    dirs = [PROJECT_ROOT / "tasks"]
    extra = os.environ.get("MMBENCH_TASK_PATH", "")
    dirs += [Path(p).expanduser() for p in extra.split(os.pathsep) if p]
    return dirs
