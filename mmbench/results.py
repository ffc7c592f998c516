"""Result records on disk: one JSON per (model config, task fingerprint, seed), written atomically.

Layout: ``<results root>/<task>/<model>/<run key>.json`` and, with ``--log-samples``,
``<run key>.samples.jsonl.gz`` beside it. ``--force`` never deletes: the previous record moves to
``<task>/<model>/superseded/``.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mmbench.io import atomic_write_json, atomic_write_jsonl_gz, canonical_json, sha256_hex, utc_now  # noqa: F401

SCHEMA_VERSION = 1


@dataclass
class ResultRecord:
    """One job's result, as written to ``<run key>.json`` (the layout of ``to_dict``; schema ``SCHEMA_VERSION``).

    model:     name, class, config, overrides, num_parameters, details, backbones, checkpoint
    task:      the card's description plus data_hash, fingerprint, data_verified, stats, modalities, notes
    metrics:   split ("valid", "test") -> metric name -> value; ``main_metric`` names the headline test metric
    intervals: metric -> [low, high] (95% bootstrap over test units)
    training:  history, selection, train/eval seconds; timing: load and wall seconds
    device:    where it ran (device, name, dtype, threads, peak GPU memory); None in records older than devices
    extra:     family-specific top-level entries (e.g. ``examples``, per-class tables), kept as they are
    path:      where the record was read from (not written)
    """

    run_key: str
    model: dict[str, Any]
    task: dict[str, Any]
    seed: int
    metrics: dict[str, dict[str, Any]]
    main_metric: str = ""
    headline_metrics: list[str] = field(default_factory=list)
    created_at: str = ""
    protocol: dict[str, Any] = field(default_factory=dict)
    intervals: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    timing: dict[str, Any] = field(default_factory=dict)
    device: dict[str, Any] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    samples_file: str | None = None
    schema: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)
    path: Path | None = field(default=None, compare=False)

    # the names used throughout the harness
    @property
    def model_name(self) -> str:
        return str(self.model["name"])

    @property
    def task_name(self) -> str:
        return str(self.task["name"])

    @property
    def family(self) -> str | None:
        return self.task.get("family")

    @property
    def overrides(self) -> dict[str, Any]:
        return dict(self.model.get("overrides") or {})

    def test(self, metric: str | None = None) -> Any:
        """The test value of ``metric`` (default: the main metric), or None."""
        return self.metrics.get("test", {}).get(metric or self.main_metric)

    def to_dict(self) -> dict[str, Any]:
        """The JSON layout: the fields at the top level, ``extra`` merged in, ``path`` left out (and ``device``
        when unknown, as in records written before devices were recorded)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("extra", "path")}
        if out["device"] is None:
            del out["device"]
        return {**self.extra, **out}

    @classmethod
    def from_dict(cls, raw: dict[str, Any], path: Path | None = None) -> ResultRecord:
        """Any record this project has written (every schema so far); unknown top-level keys go to ``extra``."""
        if not isinstance(raw, dict) or "run_key" not in raw or "metrics" not in raw:
            raise ValueError("not an mmbench result record")
        names = {f.name for f in fields(cls)} - {"extra", "path"}
        known = {k: v for k, v in raw.items() if k in names}
        return cls(**known, extra={k: v for k, v in raw.items() if k not in names}, path=path)


def run_key(model_name: str, config: dict[str, Any], task_fingerprint: str, seed: int) -> str:
    """Identity of one job: the same key means the same computation."""
    return sha256_hex(canonical_json({"model": model_name, "config": config, "task": task_fingerprint,
                                      "seed": seed}))[:20]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)




class ResultStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    def record_path(self, task: str, model: str, key: str) -> Path:
        return self.root / _safe(task) / _safe(model) / f"{key}.json"

    def samples_path(self, task: str, model: str, key: str) -> Path:
        return self.root / _safe(task) / _safe(model) / f"{key}.samples.jsonl.gz"

    def find(self, task: str, model: str, key: str) -> ResultRecord | None:
        path = self.record_path(task, model, key)
        if not path.exists():
            return None
        try:
            return ResultRecord.from_dict(json.loads(path.read_text(encoding="utf-8")), path)
        except (OSError, ValueError, TypeError) as e:
            print(f"warning: unreadable result file {path} ({e}); it will be recomputed and the old "
                  f"file kept under superseded/", file=sys.stderr)
            return None

    def write(self, record: ResultRecord, samples: list[dict] | None = None) -> Path:
        """Move any previous record aside, write the samples (if any), then the record itself."""
        path = self.record_path(record.task_name, record.model_name, record.run_key)
        if path.exists():
            self._supersede(path)
        if samples is not None:
            spath = self.samples_path(record.task_name, record.model_name, record.run_key)
            atomic_write_jsonl_gz(spath, samples)
            record.samples_file = spath.name
        atomic_write_json(path, record.to_dict())
        record.path = path
        return path

    def _supersede(self, path: Path) -> None:
        dest = path.parent / "superseded"
        dest.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        os.replace(path, dest / f"{path.stem}.{stamp}.json")
        samples = path.with_name(f"{path.stem}.samples.jsonl.gz")
        if samples.exists():
            os.replace(samples, dest / f"{path.stem}.{stamp}.samples.jsonl.gz")

    def iter_records(self) -> Iterator[tuple[Path, ResultRecord]]:
        """Every current record; unreadable files are named on stderr and skipped (never deleted)."""
        if not self.root.exists():
            return
        for path in sorted(self.root.rglob("*.json")):
            rel = path.relative_to(self.root).parts
            if "superseded" in rel or rel[0].startswith("_") or path.name.startswith("."):
                continue  # superseded records, sweep logs and failure reports, temp files
            try:
                rec = ResultRecord.from_dict(json.loads(path.read_text(encoding="utf-8")), path)
            except (OSError, ValueError, TypeError) as e:
                print(f"warning: skipping unreadable result file {path}: {e}", file=sys.stderr)
                continue
            yield path, rec
