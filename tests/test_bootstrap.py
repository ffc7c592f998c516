"""Percentile bootstrap: determinism, coverage of the point estimate, width, fast path = generic path."""

from __future__ import annotations

import numpy as np
import pytest

from mmbench.metrics.bootstrap import (
    bootstrap_ci,
    bootstrap_distribution,
    mean_ci,
    paired_bootstrap,
    resample_indices,
)
from mmbench.metrics.classification import classification_metrics
from mmbench.metrics.generation import coco_scores


def _mean_fn(values: np.ndarray):
    return lambda idx: {"m": float(values[idx].mean())}


def test_resample_indices_are_seeded_numpy_draws():
    draws = list(resample_indices(7, 3, seed=4))
    rng = np.random.default_rng(4)
    for d in draws:
        np.testing.assert_array_equal(d, rng.integers(0, 7, size=7))
    with pytest.raises(ValueError):
        next(resample_indices(0, 3))


def test_deterministic_under_a_seed():
    values = np.random.default_rng(0).random(200)
    a = bootstrap_ci(_mean_fn(values), 200, resamples=200, seed=3)
    b = bootstrap_ci(_mean_fn(values), 200, resamples=200, seed=3)
    c = bootstrap_ci(_mean_fn(values), 200, resamples=200, seed=4)
    assert a == b and a != c
    assert mean_ci(values, 200, seed=3) == mean_ci(values, 200, seed=3)


def test_ci_contains_point_estimate_and_is_ordered():
    rng = np.random.default_rng(1)
    y_true = rng.integers(0, 5, 300)
    y_pred = np.where(rng.random(300) < 0.6, y_true, rng.integers(0, 5, 300))
    point = classification_metrics(y_true, y_pred)
    ci = bootstrap_ci(lambda idx: classification_metrics(y_true[idx], y_pred[idx]), 300, resamples=300, seed=0)
    assert set(ci) == set(point)
    for k, (lo, hi) in ci.items():
        assert lo < point[k] < hi, k
        assert 0 < hi - lo < 0.2


def test_width_shrinks_with_more_samples():
    rng = np.random.default_rng(2)
    small = (rng.random(50) < 0.3).astype(float)
    large = (rng.random(4000) < 0.3).astype(float)
    lo_s, hi_s = mean_ci(small, 500, seed=0)
    lo_l, hi_l = mean_ci(large, 500, seed=0)
    assert (hi_l - lo_l) < 0.25 * (hi_s - lo_s)
    assert lo_l < large.mean() < hi_l


def test_mean_ci_equals_generic_path():
    rng = np.random.default_rng(3)
    values = {"acc": (rng.random(301) < 0.7).astype(float), "score": rng.normal(size=301)}
    fast = mean_ci(values, resamples=400, seed=9, alpha=0.1)
    generic = bootstrap_ci(lambda idx: {k: float(v[idx].mean()) for k, v in values.items()}, 301,
                           resamples=400, seed=9, alpha=0.1)
    assert fast.keys() == generic.keys()
    for k in fast:
        np.testing.assert_allclose(fast[k], generic[k], rtol=0, atol=1e-12)
    single = mean_ci(values["score"], resamples=400, seed=9, alpha=0.1)
    np.testing.assert_allclose(single, generic["score"], atol=1e-12)


def test_bootstrap_distribution_shapes():
    values = np.arange(10.0)
    dist = bootstrap_distribution(_mean_fn(values), 10, resamples=25, seed=0)
    assert dist["m"].shape == (25,) and dist["m"].min() >= 0 and dist["m"].max() <= 9


def test_paired_bootstrap():
    rng = np.random.default_rng(4)
    truth = rng.integers(0, 2, 400)
    good = np.where(rng.random(400) < 0.9, truth, 1 - truth)
    bad = np.where(rng.random(400) < 0.6, truth, 1 - truth)

    def fn(pred):
        return lambda idx: {"accuracy": float((pred[idx] == truth[idx]).mean()), "only_here": 0.0}

    assert paired_bootstrap(fn(good), fn(bad), 400, resamples=200, seed=0)["accuracy"] == 0.0
    assert paired_bootstrap(fn(bad), fn(good), 400, resamples=200, seed=0)["accuracy"] == 1.0
    assert paired_bootstrap(fn(good), fn(good), 400, resamples=50, seed=0) == {"accuracy": 1.0, "only_here": 1.0}
    close = np.where(rng.random(400) < 0.02, 1 - good, good)  # nearly the same system: p-value-like in (0, 1)
    assert 0.0 < paired_bootstrap(fn(close), fn(good), 400, resamples=300, seed=0)["accuracy"] <= 1.0


def test_bootstrap_of_corpus_generation_metrics():
    rng = np.random.default_rng(5)
    words = np.array("a dog cat runs on the mat big red park".split())
    refs = [[" ".join(rng.choice(words, 6))] for _ in range(80)]
    preds = [r[0] if rng.random() < 0.5 else " ".join(rng.choice(words, 5)) for r in refs]
    scores = coco_scores(preds, refs)
    ci = bootstrap_ci(scores.resample, scores.n, resamples=200, seed=0)
    assert set(ci) == {"bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "cider"}
    for k, (lo, hi) in ci.items():
        assert lo < scores[k] < hi, k
    rouge_fast = mean_ci(scores.per_sample["rouge_l"], 200, seed=0)
    np.testing.assert_allclose(rouge_fast, ci["rouge_l"], atol=1e-12)


def test_alpha_validation():
    with pytest.raises(ValueError, match="alpha"):
        mean_ci(np.ones(3), alpha=1.5)
