"""Task families and the one job skeleton that runs any of them.

A family is one module with one ``FamilyJob`` subclass registered under the family's name
(``@register_family("kgc")``): what its adapters receive (``view``), how a split is scored and checked
(``score``), and what the record says about the test split (``intervals``, ``protocol``, ``samples``,
``extra``). ``run_job`` is the skeleton every family shares: setup, train with validation selection (or load a
checkpoint), score valid, score test once. ``mmbench.runner``, ``mmbench.validate`` and the sweep dispatch
through it; a new family is a new module plus its task cards (the built-in ones are listed in ``BUILTIN``).
"""

from __future__ import annotations

import importlib
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from mmbench.errors import ConfigError


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


@dataclass
class Scored:
    """One scored split: its metrics and what the family needs to say more about it (ranks, predictions)."""

    metrics: dict[str, float]
    detail: Any = None


class FamilyJob(ABC):
    """One job of a family, built from the task data, card and options (``Family(data, card, options,
    progress)``); holds the adapter's view and whatever the family needs to score splits."""

    name: ClassVar[str] = ""
    default_selection: ClassVar[str] = ""
    """Validation metric that picks the kept state, unless the card's ``protocol.selection_metric`` says."""

    def __init__(self, data: Any, card: Any, options: JobOptions, progress: Any):
        self.data, self.card, self.options, self.progress = data, card, options, progress
        self.seed = 0   # set by run_job

    @property
    def selection_key(self) -> str:
        return self.card.protocol.get("selection_metric", self.default_selection)

    @property
    @abstractmethod
    def view(self) -> Any:
        """What the adapter's ``setup`` receives (never a held-out answer)."""

    def small_view(self) -> Any:
        """A view for a quick smoke run (``validate-adapter``); the full view unless a family has a cheaper one."""
        return self.view

    @abstractmethod
    def has_split(self, split: str) -> bool:
        """Whether the split has anything to score."""

    @abstractmethod
    def score(self, model: Any, split: str) -> Scored:
        """Ask the adapter for its outputs on ``split`` ("valid" or "test"), check every batch, compute metrics."""

    @abstractmethod
    def probe(self, model: Any) -> tuple[Any, str]:
        """A few checked outputs on validation inputs (``validate-adapter``): (outputs to compare, description)."""

    def intervals(self, test: Scored) -> dict[str, list[float]]:
        return {}

    def protocol(self, test: Scored) -> dict[str, Any]:
        return {}

    def samples(self, test: Scored) -> list[dict[str, Any]]:
        return []

    def extra(self, test: Scored) -> dict[str, Any]:
        return {}

    def bootstrap_protocol(self, unit: str) -> dict[str, Any]:
        o = self.options
        return {"resamples": o.bootstrap_resamples, "seed": o.bootstrap_seed, "unit": unit,
                "interval": "95% percentile"}


BUILTIN = {"kgc": "mmbench.jobs.kgc", "classification": "mmbench.jobs.classification",
           "generation": "mmbench.jobs.generation"}
_FAMILIES: dict[str, type[FamilyJob]] = {}


def register_family(name: str):
    """Class decorator: ``name`` is a task family (cards with ``family: name`` run through this class)."""

    def deco(cls: type[FamilyJob]) -> type[FamilyJob]:
        cls.name = name
        _FAMILIES[name] = cls
        return cls
    return deco


def family_names() -> list[str]:
    return sorted(set(BUILTIN) | set(_FAMILIES))


def family_job(name: str) -> type[FamilyJob]:
    """The ``FamilyJob`` class of a family (built-in families are imported on first use)."""
    if name not in _FAMILIES and name in BUILTIN:
        importlib.import_module(BUILTIN[name])
    if name not in _FAMILIES:
        raise ConfigError(f"task family {name!r} has no job class; known: {', '.join(family_names())}")
    return _FAMILIES[name]


def selection_summary(sel: Any, metric: str | None, reason: str = "") -> dict[str, Any]:
    """The record's account of which validation check picked the kept state."""
    from mmbench.training import Selection

    assert isinstance(sel, Selection)
    if sel.value is None:
        return {"metric": None, "epoch": sel.epoch, "value": None, "checks": sel.checks,
                "reason": reason or "no validation checks"}
    return {"metric": f"valid/{metric}", "epoch": sel.epoch, "value": sel.value, "checks": sel.checks}


def run_job(job: FamilyJob, model: Any, seed: int) -> JobOutcome:
    """The skeleton of every job: setup, train with validation selection (or load the given checkpoint), score
    validation, score test once."""
    from mmbench.training import Selection, train_with_selection

    options, key = job.options, job.selection_key
    job.seed = seed
    model.setup(job.view, seed)
    has_valid = job.has_split("valid")

    def validate() -> tuple[float, Scored]:
        scored = job.score(model, "valid")
        return scored.metrics[key], scored

    if options.checkpoint_state is not None:
        model.load_state_dict(options.checkpoint_state)
        sel, reason = Selection(epoch=0, value=None, result=None), "checkpoint given"
    else:
        sel = train_with_selection(model, validate if has_valid else None, job.progress)
        reason = "no validation split" if not has_valid else "no training epochs"
    t0 = time.perf_counter()
    valid = sel.result if sel.result is not None else (validate()[1] if has_valid else None)
    test = job.score(model, "test")
    return JobOutcome(
        metrics={"valid": valid.metrics if valid else {}, "test": test.metrics},
        intervals=job.intervals(test),
        training={"history": sel.history, "selection": selection_summary(sel, key, reason),
                  "train_seconds": round(sel.train_seconds, 3),
                  "eval_seconds": round(sel.eval_seconds + time.perf_counter() - t0, 3)},
        protocol=job.protocol(test),
        samples=job.samples(test) if options.log_samples else None,
        extra=job.extra(test))
