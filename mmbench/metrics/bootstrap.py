"""Seeded percentile bootstrap over sample indices.

A metric is a function ``metric_fn(idx) -> dict[str, float]`` of an index array idx (M,) (repeats allowed):
it recomputes every metric on ``[sample[i] for i in idx]``. Corpus-level metrics (BLEU, CIDEr, macro F1) must be
recomputed on each resample; ``GenerationScores.resample`` (mmbench.metrics.generation) is such a function, and
for classification ``lambda idx: classification_metrics(y_true[idx], y_pred[idx])`` is one.

Resample r draws ``rng.integers(0, n, size=n)`` from ``numpy.random.default_rng(seed)``, r = 0, 1, ...; every
function here draws the same index arrays for the same (n, seed), so ``mean_ci`` and the generic path agree, and
``paired_bootstrap`` scores both systems on the same resamples. The interval is the percentile interval
``np.quantile(values, [alpha / 2, 1 - alpha / 2])`` (linear interpolation) over the resampled values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

MetricFn = Callable[[np.ndarray], Mapping[str, float]]
"""idx (M,) int64 sample indices -> metric name -> value on that resample."""

_CHUNK_ELEMS = 1 << 22  # elements gathered at once by mean_ci


def resample_indices(n: int, resamples: int = 1000, seed: int = 0) -> Iterator[np.ndarray]:
    """The ``resamples`` index arrays (n,) int64 that every function here uses, in order."""
    if n <= 0:
        raise ValueError("need at least one sample")
    if resamples <= 0:
        raise ValueError("need at least one resample")
    rng = np.random.default_rng(seed)
    for _ in range(resamples):
        yield rng.integers(0, n, size=n)


def bootstrap_distribution(metric_fn: MetricFn, n: int, resamples: int = 1000, seed: int = 0
                           ) -> dict[str, np.ndarray]:
    """Metric values on every resample: name -> (resamples,) float64 (the keys of the first resample)."""
    out: dict[str, list[float]] = {}
    for r, idx in enumerate(resample_indices(n, resamples, seed)):
        values = metric_fn(idx)
        if r == 0:
            out = {k: [] for k in values}
        for k, v in out.items():
            v.append(float(values[k]))
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}


def _interval(values: np.ndarray, alpha: float) -> tuple[float, float]:
    lo, hi = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")


def bootstrap_ci(metric_fn: MetricFn, n: int, resamples: int = 1000, seed: int = 0,
                 alpha: float = 0.05) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap (1 - alpha) interval of every metric: name -> (low, high).

    metric_fn: idx (n,) -> dict of floats, recomputing the metric on the resample; n: number of samples.
    """
    _check_alpha(alpha)
    dist = bootstrap_distribution(metric_fn, n, resamples, seed)
    return {k: _interval(v, alpha) for k, v in dist.items()}


def mean_ci(values: Any, resamples: int = 1000, seed: int = 0, alpha: float = 0.05
            ) -> tuple[float, float] | dict[str, tuple[float, float]]:
    """Fast path for metrics that are means of per-sample values (accuracy, ROUGE-L, per-sample CIDEr at fixed IDF).

    values: (n,) array -> returns (low, high); or a mapping name -> (n,) arrays (same n) -> name -> (low, high).
    Same index draws as ``bootstrap_ci(lambda idx: {"m": values[idx].mean()}, n, ...)``, gathered in chunks,
    so the intervals agree with the generic path (up to float rounding of the means).
    """
    _check_alpha(alpha)
    if isinstance(values, Mapping):
        names = list(values)
        mat = np.stack([np.asarray(values[k], dtype=np.float64).reshape(-1) for k in names])
    else:
        names = []
        mat = np.asarray(values, dtype=np.float64).reshape(1, -1)
    k, n = mat.shape
    means = np.empty((k, resamples), dtype=np.float64)
    chunk = max(1, _CHUNK_ELEMS // max(1, n * k))
    draws = resample_indices(n, resamples, seed)
    for start in range(0, resamples, chunk):
        idx = np.stack([next(draws) for _ in range(min(chunk, resamples - start))])  # (B, n)
        means[:, start: start + idx.shape[0]] = mat[:, idx].mean(axis=-1)
    intervals = [_interval(means[i], alpha) for i in range(k)]
    return dict(zip(names, intervals, strict=True)) if names else intervals[0]


def paired_bootstrap(metric_fn_a: MetricFn, metric_fn_b: MetricFn, n: int, resamples: int = 1000,
                     seed: int = 0) -> dict[str, float]:
    """One-sided paired bootstrap of system A against system B on the same n samples.

    Both metrics are computed on the same resamples; returns, for every metric both report, the fraction of
    resamples with A <= B. A small value (e.g. < 0.05) means A beats B on (nearly) every resample, i.e. evidence
    that A is better; it is p-value-like, not an exact p-value. For a lower-is-better metric read 1 - value.
    """
    a_vals: dict[str, list[float]] = {}
    b_vals: dict[str, list[float]] = {}
    for r, idx in enumerate(resample_indices(n, resamples, seed)):
        a, b = metric_fn_a(idx), metric_fn_b(idx)
        if r == 0:
            common = [k for k in a if k in b]
            a_vals, b_vals = {k: [] for k in common}, {k: [] for k in common}
        for k in a_vals:
            a_vals[k].append(float(a[k]))
            b_vals[k].append(float(b[k]))
    return {k: float(np.mean(np.asarray(a_vals[k]) <= np.asarray(b_vals[k]))) for k in a_vals}
