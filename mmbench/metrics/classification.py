"""Single-label classification metrics with scikit-learn semantics, in numpy (no sklearn import).

``classification_metrics`` matches ``accuracy_score`` and
``precision_recall_fscore_support(average="macro", zero_division=0)``: per class c,
  precision_c = tp_c / #pred_c,  recall_c = tp_c / #true_c,  f1_c = 2 tp_c / (#true_c + #pred_c),
each 0 when its denominator is 0; the macro figures are plain means over the classes, which are those present in
``y_true`` or ``y_pred`` (sorted) unless ``labels`` is given (then exactly ``labels``, as sklearn's ``labels=``:
absent labels count as zeros, samples of other classes still count for accuracy and as errors).
All values lie in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

KEYS = ("accuracy", "macro_precision", "macro_recall", "macro_f1")


def _as_1d(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    return arr


def _inputs(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    t, p = _as_1d(y_true, "y_true"), _as_1d(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true {t.shape} and y_pred {p.shape} differ in length")
    if t.size == 0:
        raise ValueError("no samples")
    return t, p


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, 0 where den == 0 (sklearn's zero_division=0)."""
    out = np.zeros(num.shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def per_class_counts(y_true: Any, y_pred: Any, classes: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True positives, #true and #predicted for each of ``classes``: three (C,) int64 arrays.

    y_true, y_pred: (N,) labels (ints, strings, or a torch tensor); classes: (C,) labels, any order.
    """
    t, p = _inputs(y_true, y_pred)
    classes = _as_1d(classes, "classes")
    universe = np.union1d(np.union1d(t, p), classes)
    k = universe.size
    ti, pi = np.searchsorted(universe, t), np.searchsorted(universe, p)
    tp = np.bincount(ti[ti == pi], minlength=k)
    true_sum, pred_sum = np.bincount(ti, minlength=k), np.bincount(pi, minlength=k)
    ci = np.searchsorted(universe, classes)
    return tp[ci].astype(np.int64), true_sum[ci].astype(np.int64), pred_sum[ci].astype(np.int64)


def _prf(tp: np.ndarray, true_sum: np.ndarray, pred_sum: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (_safe_div(tp, pred_sum), _safe_div(tp, true_sum),
            _safe_div(2.0 * tp, true_sum.astype(np.float64) + pred_sum))


def classification_metrics(y_true: Any, y_pred: Any, *, labels: Sequence[Any] | None = None,
                           num_classes: int | None = None) -> dict[str, float]:
    """Accuracy and macro precision / recall / F1 (sklearn semantics, zero_division=0); see the module docstring.

    y_true, y_pred: (N,) class labels (ints, strings, or torch tensors).
    labels: the classes to macro-average over (sklearn's ``labels=``); default: classes in y_true or y_pred.
    num_classes: only a check that integer labels lie in [0, num_classes); it does not change the averaging
        (pass ``labels=range(num_classes)`` to average over every class, present or not).
    returns: {"accuracy", "macro_precision", "macro_recall", "macro_f1"} -> float
    """
    t, p = _inputs(y_true, y_pred)
    if num_classes is not None:
        for name, arr in (("y_true", t), ("y_pred", p)):
            if arr.min() < 0 or arr.max() >= num_classes:
                raise ValueError(f"{name} has labels outside [0, {num_classes})")
    classes = np.union1d(t, p) if labels is None else _as_1d(list(labels), "labels")
    if classes.size == 0:
        raise ValueError("labels is empty")
    precision, recall, f1 = _prf(*per_class_counts(t, p, classes))
    return {
        "accuracy": float(np.mean(t == p)),
        "macro_precision": float(np.mean(precision)),
        "macro_recall": float(np.mean(recall)),
        "macro_f1": float(np.mean(f1)),
    }


def per_class_table(y_true: Any, y_pred: Any, class_names: Sequence[str]) -> list[dict[str, Any]]:
    """One row per class, in class-id order: {"label", "class", "support", "precision", "recall", "f1"}.

    y_true, y_pred: (N,) integer class ids in [0, C); class_names: (C,) names, ``class_names[c]`` names id c.
    Every class gets a row, also classes with no sample (support 0) or never predicted (precision 0).
    """
    t, p = _inputs(y_true, y_pred)
    c = len(class_names)
    for name, arr in (("y_true", t), ("y_pred", p)):
        if not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"{name} must hold integer class ids")
        if arr.min() < 0 or arr.max() >= c:
            raise ValueError(f"{name} has ids outside [0, {c}) for {c} class names")
    tp, true_sum, pred_sum = per_class_counts(t, p, np.arange(c))
    precision, recall, f1 = _prf(tp, true_sum, pred_sum)
    return [{"label": i, "class": class_names[i], "support": int(true_sum[i]), "precision": float(precision[i]),
             "recall": float(recall[i]), "f1": float(f1[i])} for i in range(c)]
