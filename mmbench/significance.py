"""Paired significance between two models on one task, from their saved per-sample logs.

Each record's ``--log-samples`` file gives one value per test sample: the realistic reciprocal rank of a
(triple, side) query (KGC), 1/0 correctness of a node (classification), or the per-sample CIDEr-D
(generation; IDF from the whole reference set, i.e. without recomputing the corpus metric per resample).
Values are averaged over a model's seeds per sample, the two models are aligned on their common samples,
and a paired bootstrap of the mean difference gives the fraction of resamples where the model is not
better than the reference (small = significantly better) and the reverse.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmbench.io import read_jsonl_gz
from mmbench.metrics.bootstrap import resample_indices
from mmbench.results import ResultRecord


@dataclass(frozen=True)
class PairedResult:
    n: int
    mean_diff: float       # mean over samples of (model - reference)
    p_not_better: float    # fraction of resamples with mean diff <= 0
    p_not_worse: float     # fraction of resamples with mean diff >= 0

    def marker(self, alpha: float = 0.05) -> str:
        if self.p_not_better < alpha:
            return "▲"
        if self.p_not_worse < alpha:
            return "▼"
        return ""


def sample_values(record: ResultRecord) -> dict[Any, float] | None:
    """Per-sample values of one record, keyed so that two models' logs align; None without a log."""
    name = record.samples_file
    if not name or record.path is None:
        return None
    path = Path(record.path).with_name(name)
    if not path.exists():
        return None
    rows = read_jsonl_gz(path)
    family = record.family
    if family == "kgc":
        return {(r["h"], r["r"], r["t"], r["side"]): 2.0 / (r["rank_opt"] + r["rank_pess"]) for r in rows}
    if family == "classification":
        return {r["node"]: float(r["label"] == r["pred"]) for r in rows}
    if family == "generation":
        from mmbench.metrics.generation import standard_metrics

        scores = standard_metrics([r["prediction"] for r in rows], [[r["reference"]] for r in rows])
        return dict(zip((r["id"] for r in rows), scores.per_sample["cider"], strict=True))
    return None


def seed_mean(per_record: list[dict[Any, float]]) -> dict[Any, float]:
    sums: dict[Any, float] = defaultdict(float)
    counts: dict[Any, int] = defaultdict(int)
    for values in per_record:
        for k, v in values.items():
            sums[k] += v
            counts[k] += 1
    return {k: sums[k] / counts[k] for k in sums}


def paired_test(model: dict[Any, float], reference: dict[Any, float], resamples: int = 1000,
                seed: int = 0) -> PairedResult | None:
    keys = sorted(set(model) & set(reference), key=repr)
    if len(keys) < 2:
        return None
    d = np.array([model[k] - reference[k] for k in keys], dtype=np.float64)
    means = np.empty(resamples)
    draws = resample_indices(len(d), resamples, seed)
    chunk = max(1, (1 << 22) // len(d))
    for start in range(0, resamples, chunk):
        idx = np.stack([next(draws) for _ in range(min(chunk, resamples - start))])
        means[start:start + len(idx)] = d[idx].mean(axis=1)
    return PairedResult(n=len(d), mean_diff=float(d.mean()), p_not_better=float(np.mean(means <= 0)),
                        p_not_worse=float(np.mean(means >= 0)))
