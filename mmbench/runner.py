"""One evaluation job: load the task, build the model, fit with validation selection, score test
once, write the result record."""

from __future__ import annotations

import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmbench import paths
from mmbench.config import build_config, config_to_dict
from mmbench.data import load_task_data
from mmbench.devices import check_device_spec, describe_device, reset_peak_memory, resolve_device
from mmbench.errors import ConfigError
from mmbench.io import RunLock, file_sha256, utc_now
from mmbench.jobs import JobOptions, JobOutcome, family_job, run_job
from mmbench.progress import Progress
from mmbench.provenance import provenance
from mmbench.registry import get_model
from mmbench.results import SCHEMA_VERSION, ResultRecord, ResultStore, run_key
from mmbench.tasks import TaskCard, get_card


@dataclass
class EvalRequest:
    model: str
    task: str
    seed: int = 0
    overrides: dict[str, Any] = field(default_factory=dict)
    checkpoint: Path | None = None
    save_checkpoint: Path | None = None
    force: bool = False
    log_samples: bool = False
    quiet: bool = False
    verify_data: bool = True
    results_dir: Path | None = None
    shards: int = 1
    device: str = "auto"          # auto | cpu | cuda | cuda:N (mmbench.devices)
    threads: int | None = None    # torch intra-op threads (None: leave as set, e.g. by a sweep worker)


@dataclass
class EvalOutcome:
    record: ResultRecord
    path: Path
    reused: bool


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def headline_key(card: TaskCard, metric: str) -> str:
    """The record key of a card-level metric name (``mrr`` -> ``both.realistic.mrr`` for KGC)."""
    if card.family == "kgc":
        return f"both.{card.protocol.get('rank_type', 'realistic')}.{metric}"
    return metric


def run_family_job(model: Any, data: Any, card: TaskCard, seed: int, progress: Progress,
                   options: JobOptions) -> JobOutcome:
    """One job of the card's family through the shared skeleton (``mmbench.jobs.run_job``)."""
    return run_job(family_job(card.family)(data, card, options, progress), model, seed)


@dataclass
class JobPlan:
    """Everything resolved before a job runs: the run key decides whether it runs at all."""

    req: EvalRequest
    card: TaskCard
    model_cls: type
    config: Any
    config_dict: dict[str, Any]
    dataset: Any
    data_hash: str
    fingerprint: str
    key: str
    load_seconds: float
    store: ResultStore

    @property
    def record_path(self) -> Path:
        return self.store.record_path(self.card.name, self.model_cls.name, self.key)

    def existing(self) -> ResultRecord | None:
        """The finished record, if it exists and holds what the request asks for."""
        rec = self.store.find(self.card.name, self.model_cls.name, self.key)
        if rec is None or (self.req.log_samples and not rec.samples_file) or self.req.save_checkpoint:
            return None
        return rec


def run_key_config(config_cls: type, config_dict: dict[str, Any]) -> dict[str, Any]:
    """The config as its run key sees it: a key the config class lists in ``keys_added_later`` (a key added
    after records existed, with the value that reproduces the behaviour before it) is left out at that value,
    so the records made before the key keep their run keys."""
    later = getattr(config_cls, "keys_added_later", None) or {}
    return {k: v for k, v in config_dict.items() if not (k in later and v == later[k])}


def plan(req: EvalRequest, dataset: Any = None) -> JobPlan:
    """Resolve task, model and config, load the data (unless ``dataset`` is given), compute the run key."""
    check_device_spec(req.device)
    card = get_card(req.task)
    model_cls = get_model(req.model, card.family)
    if model_cls.family != card.family:
        raise ConfigError(f"model {req.model!r} is a {model_cls.family or 'family-less'} adapter but task "
                          f"{card.name!r} is a {card.family} task")
    config = build_config(model_cls.Config, card.name, model_cls.presets, req.overrides, f"model {req.model}",
                          card=card)
    config_dict = config_to_dict(config)
    t_load = time.perf_counter()
    if dataset is None:
        dataset = load_task_data(card, verify=req.verify_data)
    data_hash = dataset.data_hash()
    fingerprint = card.fingerprint(data_hash)
    load_seconds = time.perf_counter() - t_load
    key_config = run_key_config(model_cls.Config, config_dict)
    if req.checkpoint is not None:
        key_config["__checkpoint_sha256"] = file_sha256(req.checkpoint)
    if getattr(model_cls, "source_sha256", None):  # adapters loaded from a file: their code is part of the key
        key_config["__source_sha256"] = model_cls.source_sha256
    key = run_key(model_cls.name, key_config, fingerprint, req.seed)
    store = ResultStore(req.results_dir or paths.results_root())
    return JobPlan(req, card, model_cls, config, config_dict, dataset, data_hash, fingerprint, key, load_seconds,
                   store)


def run_eval(req: EvalRequest, dataset: Any = None) -> EvalOutcome:
    """Plan the job, reuse its record if it exists (unless ``--force``), else run it and write the record.

    One process at a time runs a given run key: a second ``eval`` of the same job waits for the first (a lock
    file beside the record, ``<key>.lock``) and then reuses its record."""
    p = plan(req, dataset)
    progress = Progress(req.quiet)
    lock = RunLock(p.record_path.with_suffix(".lock"))

    def waiting(holder: dict[str, Any] | None) -> None:
        who = f"pid {holder['pid']} on {holder['host']} since {holder['since']}" if holder else "another process"
        print(f"job {p.key} is running ({who}); waiting for it to finish (lock: {lock.path})", file=sys.stderr,
              flush=True)

    lock.acquire(on_wait=waiting)
    try:
        return _reuse_or_execute(p, req, progress)
    finally:
        lock.release()


def _reuse_or_execute(p: JobPlan, req: EvalRequest, progress: Progress) -> EvalOutcome:
    if not req.force:
        existing = p.existing()
        if existing is not None:
            progress.log(f"result exists: {p.record_path} (same model config, task fingerprint and seed); "
                         f"pass --force to recompute")
            return EvalOutcome(existing, p.record_path, reused=True)
        if p.record_path.exists():
            progress.log(f"result exists at {p.record_path} but without the per-query samples or checkpoint asked "
                         f"for: recomputing (the old record moves to superseded/)")
    return execute(p, progress)


def execute(p: JobPlan, progress: Progress) -> EvalOutcome:
    """Run a planned job and write its record."""
    req, card, model_cls, config, config_dict = p.req, p.card, p.model_cls, p.config, p.config_dict
    dataset, data_hash, fingerprint, key, load_seconds, store = (p.dataset, p.data_hash, p.fingerprint, p.key,
                                                                 p.load_seconds, p.store)
    device = resolve_device(req.device)
    if req.threads is not None:
        if req.threads < 1:
            raise ConfigError(f"--threads {req.threads}: expected at least 1")
        torch.set_num_threads(req.threads)
    seed_everything(req.seed)
    model = model_cls(config)
    model.device, model.progress = device, progress
    t0 = time.perf_counter()
    state = torch.load(req.checkpoint, map_location="cpu", weights_only=False) if req.checkpoint else None
    options = JobOptions(log_samples=req.log_samples, checkpoint_state=state,
                         bootstrap_resamples=int(card.protocol.get("bootstrap_resamples", 1000)),
                         bootstrap_seed=int(card.protocol.get("bootstrap_seed", 0)), shards=req.shards,
                         device=device)
    reset_peak_memory(device)
    outcome = run_family_job(model, dataset, card, req.seed, progress, options)
    if req.save_checkpoint:
        req.save_checkpoint.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), req.save_checkpoint)

    record = ResultRecord(
        schema=SCHEMA_VERSION,
        run_key=key,
        created_at=utc_now(),
        model={"name": model_cls.name, "class": f"{model_cls.__module__}:{model_cls.__qualname__}",
               "config": config_dict, "overrides": dict(req.overrides),
               "num_parameters": model.num_parameters(), "details": model.describe(),
               "backbones": dict(getattr(model, "backbones", {}) or {}),
               "checkpoint": str(req.checkpoint) if req.checkpoint else None},
        task={**card.describe(), "data_hash": data_hash, "fingerprint": fingerprint,
              "data_verified": dataset.verified, "stats": dataset.stats(),
              "modalities": dataset.describe(), "notes": dataset.notes},
        seed=req.seed,
        main_metric=headline_key(card, card.main_metric),
        headline_metrics=[headline_key(card, m) for m in card.metrics],
        protocol=outcome.protocol,
        metrics=outcome.metrics,
        intervals=outcome.intervals,
        training=outcome.training,
        extra=dict(outcome.extra),
        timing={"load_seconds": round(load_seconds, 3), "wall_seconds": round(time.perf_counter() - t0, 3)},
        device={**describe_device(device, getattr(model, "compute_dtype", None)),
                "threads": torch.get_num_threads()},
        provenance=provenance(),
        samples_file=None,
    )
    path = store.write(record, outcome.samples)
    return EvalOutcome(record, path, reused=False)
