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
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mmbench.io import atomic_write_json, atomic_write_jsonl_gz, canonical_json, sha256_hex

SCHEMA_VERSION = 1


def run_key(model_name: str, config: dict[str, Any], task_fingerprint: str, seed: int) -> str:
    """Identity of one job: the same key means the same computation."""
    return sha256_hex(canonical_json({"model": model_name, "config": config, "task": task_fingerprint,
                                      "seed": seed}))[:20]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class ResultStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    def record_path(self, task: str, model: str, key: str) -> Path:
        return self.root / _safe(task) / _safe(model) / f"{key}.json"

    def samples_path(self, task: str, model: str, key: str) -> Path:
        return self.root / _safe(task) / _safe(model) / f"{key}.samples.jsonl.gz"

    def find(self, task: str, model: str, key: str) -> dict[str, Any] | None:
        path = self.record_path(task, model, key)
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            print(f"warning: unreadable result file {path} ({e}); it will be recomputed and the old "
                  f"file kept under superseded/", file=sys.stderr)
            return None

    def write(self, record: dict[str, Any], samples: list[dict] | None = None) -> Path:
        """Move any previous record aside, write the samples (if any), then the record itself."""
        task, model, key = record["task"]["name"], record["model"]["name"], record["run_key"]
        path = self.record_path(task, model, key)
        if path.exists():
            self._supersede(path)
        if samples is not None:
            spath = self.samples_path(task, model, key)
            atomic_write_jsonl_gz(spath, samples)
            record["samples_file"] = spath.name
        atomic_write_json(path, record)
        return path

    def _supersede(self, path: Path) -> None:
        dest = path.parent / "superseded"
        dest.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        os.replace(path, dest / f"{path.stem}.{stamp}.json")
        samples = path.with_name(f"{path.stem}.samples.jsonl.gz")
        if samples.exists():
            os.replace(samples, dest / f"{path.stem}.{stamp}.samples.jsonl.gz")

    def iter_records(self) -> Iterator[tuple[Path, dict[str, Any]]]:
        """Every current record; unreadable files are named on stderr and skipped (never deleted)."""
        if not self.root.exists():
            return
        for path in sorted(self.root.rglob("*.json")):
            rel = path.relative_to(self.root).parts
            if "superseded" in rel or rel[0].startswith("_") or path.name.startswith("."):
                continue  # superseded records, sweep logs and failure reports, temp files
            try:
                rec = json.loads(path.read_text(encoding="utf-8"))
                if not isinstance(rec, dict) or "run_key" not in rec or "metrics" not in rec:
                    raise ValueError("not an mmbench result record")
            except (OSError, ValueError) as e:
                print(f"warning: skipping unreadable result file {path}: {e}", file=sys.stderr)
                continue
            yield path, rec
