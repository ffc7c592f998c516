"""One module per task family: how a job trains, selects on validation and scores test once.

Each family's ``run_job(model, data, card, seed, progress, options) -> JobOutcome`` is called by
``mmbench.runner``, which writes the result record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class JobOptions:
    log_samples: bool = False
    checkpoint_state: dict[str, Any] | None = None
    bootstrap_resamples: int = 1000
    bootstrap_seed: int = 0
    shards: int = 1          # generation: split the test decoding over this many workers (Ray when running)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))   # the adapter's device


@dataclass
class JobOutcome:
    """metrics: {"valid": {...}, "test": {...}}; intervals: test metric -> [low, high] (95% bootstrap)."""

    metrics: dict[str, dict[str, float]]
    intervals: dict[str, list[float]]
    training: dict[str, Any]
    protocol: dict[str, Any]
    samples: list[dict[str, Any]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def selection_summary(sel: Any, metric: str | None, reason: str = "") -> dict[str, Any]:
    """The record's account of which validation check picked the kept state."""
    from mmbench.training import Selection

    assert isinstance(sel, Selection)
    if sel.value is None:
        return {"metric": None, "epoch": sel.epoch, "value": None, "checks": sel.checks,
                "reason": reason or "no validation checks"}
    return {"metric": f"valid/{metric}", "epoch": sel.epoch, "value": sel.value, "checks": sel.checks}
