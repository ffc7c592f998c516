"""Classification metrics: hand-checked values and cross-checks against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmbench.metrics.classification import classification_metrics, per_class_counts, per_class_table

sklearn_metrics = pytest.importorskip("sklearn.metrics")


def _sklearn(y_true, y_pred, labels=None) -> dict[str, float]:
    p, r, f, _ = sklearn_metrics.precision_recall_fscore_support(y_true, y_pred, labels=labels, average="macro",
                                                                 zero_division=0)
    return {"accuracy": sklearn_metrics.accuracy_score(y_true, y_pred), "macro_precision": p, "macro_recall": r,
            "macro_f1": f}


def test_by_hand():
    # class 0: tp 1, true 2, pred 2 -> P .5, R .5, F .5; class 1: tp 2, true 2, pred 3 -> P 2/3, R 1, F .8;
    # class 2: tp 0, true 1, pred 0 -> 0, 0, 0 (zero_division=0)
    m = classification_metrics([0, 0, 1, 1, 2], [0, 1, 1, 1, 0])
    assert m == pytest.approx({"accuracy": 0.6, "macro_precision": (0.5 + 2 / 3) / 3, "macro_recall": 0.5,
                               "macro_f1": 1.3 / 3}, abs=1e-15)


@pytest.mark.parametrize("seed", range(6))
def test_matches_sklearn_on_random_labels_with_absent_classes(seed):
    rng = np.random.default_rng(seed)
    n, c = int(rng.integers(5, 300)), int(rng.integers(2, 12))
    y_true = rng.integers(0, c, n)
    y_pred = np.where(rng.random(n) < 0.5, y_true, rng.integers(0, c, n))
    y_true[y_true == 1] = 0  # class 1 never true
    y_pred[y_pred == c - 1] = 0  # class c-1 never predicted
    got = classification_metrics(y_true, y_pred)
    assert got == pytest.approx(_sklearn(y_true, y_pred), abs=1e-12)
    # explicit label sets: every class (absent ones count as zeros), and a subset
    every = list(range(c + 2))
    assert classification_metrics(y_true, y_pred, labels=every) == pytest.approx(
        _sklearn(y_true, y_pred, labels=every), abs=1e-12)
    some = [0, c - 1, c + 3]
    assert classification_metrics(y_true, y_pred, labels=some) == pytest.approx(
        _sklearn(y_true, y_pred, labels=some), abs=1e-12)


def test_string_labels_and_torch_tensors():
    y_true = ["cat", "dog", "dog", "bird", "cat"]
    y_pred = ["cat", "cat", "dog", "dog", "fish"]
    assert classification_metrics(y_true, y_pred) == pytest.approx(_sklearn(y_true, y_pred), abs=1e-12)
    t, p = torch.tensor([0, 1, 2, 2, 1]), torch.tensor([0, 2, 2, 2, 1])
    assert classification_metrics(t, p) == pytest.approx(_sklearn(t.numpy(), p.numpy()), abs=1e-12)


def test_per_class_table_matches_sklearn():
    rng = np.random.default_rng(7)
    y_true, y_pred = rng.integers(0, 4, 80), rng.integers(0, 4, 80)
    y_true[y_true == 3] = 0  # class 3 has no support
    y_pred[y_pred == 2] = 1  # class 2 is never predicted
    names = ["a", "b", "c", "d", "e"]  # class 4 appears nowhere
    rows = per_class_table(y_true, y_pred, names)
    p, r, f, s = sklearn_metrics.precision_recall_fscore_support(y_true, y_pred, labels=range(5), average=None,
                                                                 zero_division=0)
    assert [row["class"] for row in rows] == names and [row["label"] for row in rows] == list(range(5))
    assert [row["support"] for row in rows] == s.tolist()
    np.testing.assert_allclose([row["precision"] for row in rows], p, atol=1e-15)
    np.testing.assert_allclose([row["recall"] for row in rows], r, atol=1e-15)
    np.testing.assert_allclose([row["f1"] for row in rows], f, atol=1e-15)
    assert rows[3]["support"] == 0 and rows[2]["precision"] == 0.0 and rows[4] == {
        "label": 4, "class": "e", "support": 0, "precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_per_class_counts():
    tp, true_sum, pred_sum = per_class_counts([0, 0, 1, 2], [0, 1, 1, 1], [2, 1, 0, 5])
    assert tp.tolist() == [0, 1, 1, 0] and true_sum.tolist() == [1, 1, 2, 0] and pred_sum.tolist() == [0, 3, 1, 0]


def test_validation():
    with pytest.raises(ValueError, match="differ"):
        classification_metrics([0, 1], [0])
    with pytest.raises(ValueError, match="no samples"):
        classification_metrics([], [])
    with pytest.raises(ValueError, match="outside"):
        classification_metrics([0, 3], [0, 1], num_classes=3)
    assert classification_metrics([0, 2], [0, 1], num_classes=3)["accuracy"] == 0.5
    with pytest.raises(ValueError, match="outside"):
        per_class_table([0, 2], [0, 1], ["a", "b"])
    with pytest.raises(ValueError, match="1-D"):
        classification_metrics([[0, 1]], [[0, 1]])
