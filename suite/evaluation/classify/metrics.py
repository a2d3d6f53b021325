"""Classification metrics from labels and scores, computed from the confusion matrix.

Conventions are scikit-learn's (``zero_division=0``, macro over every evaluated class), so numbers
compare with the seed projects, which all used sklearn; the unit tests check each against sklearn.
Micro and macro averages are reported apart: with one label per image pooled precision equals
pooled recall (micro P = R = F1 = accuracy), so a paper's "F1 below both P and R" can only be a
macro average (seed 003's table).

AUC is one-vs-rest per class (the Mann-Whitney statistic with tied scores counted half) and its
macro average runs over the classes that have both positives and negatives in the evaluated rows;
sklearn raises instead, which would lose every other metric of a small test split.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import rankdata


@dataclass(slots=True)
class Scores:
    """One protocol's result on one seed."""

    metrics: dict[str, float]
    per_class: dict[str, dict[str, float]]
    confusion: list[list[int]] | list[list[list[int]]]
    extra: dict[str, Any] = field(default_factory=dict)


def binary_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve of scores for a 0/1 target; NaN when one class is absent."""
    y = np.asarray(y).astype(bool)
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    ranks = rankdata(score)  # average ranks: a tie between a positive and a negative counts 1/2
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Rows: true class, columns: predicted class."""
    return np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )


def _ratio(num: np.ndarray | float, den: np.ndarray | float) -> np.ndarray:
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def _prf(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> tuple[np.ndarray, ...]:
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    return precision, recall, f1


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def single_label_scores(y_true: np.ndarray, scores: np.ndarray, class_names: list[str]) -> Scores:
    """Accuracy, macro/weighted/micro P, R, F1, one-vs-rest AUC, per class, and the confusion
    matrix, for integer labels and ``(N, K)`` scores (probabilities or any per-class score; the
    prediction is the arg-max)."""
    k = len(class_names)
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(scores).argmax(axis=1)
    cm = confusion_matrix(y_true, y_pred, k)
    tp = np.diag(cm).astype(np.float64)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    support = cm.sum(axis=1)
    precision, recall, f1 = _prf(tp, fp, fn)
    micro_p, micro_r, micro_f1 = (float(v) for v in _prf(tp.sum(), fp.sum(), fn.sum()))
    auc = [binary_auc(y_true == c, scores[:, c]) for c in range(k)]
    weights = support / support.sum() if support.sum() else np.zeros(k)
    metrics = {
        "accuracy": float(tp.sum() / max(len(y_true), 1)),
        "precision_macro": float(precision.mean()),
        "recall_macro": float(recall.mean()),
        "f1_macro": float(f1.mean()),
        "f1_weighted": float((f1 * weights).sum()),
        "precision_micro": micro_p,
        "recall_micro": micro_r,
        "f1_micro": micro_f1,
        "auc_ovr_macro": _nanmean(auc),
    }
    per_class = {
        name: {
            "precision": float(precision[c]),
            "recall": float(recall[c]),
            "f1": float(f1[c]),
            "auc": auc[c],
            "support": int(support[c]),
        }
        for c, name in enumerate(class_names)
    }
    return Scores(metrics, per_class, cm.tolist())


def multilabel_scores(
    y_true: np.ndarray, probs: np.ndarray, class_names: list[str], threshold: float = 0.5
) -> Scores:
    """NIH-style multi-label rows: per-class and macro/micro AUC from the probabilities, and P/R/F1
    of the decisions ``probs >= threshold``; "accuracy" is the exact-match (subset) accuracy."""
    y = np.asarray(y_true) > 0.5
    pred = np.asarray(probs) >= threshold
    tp = (y & pred).sum(axis=0).astype(np.float64)
    fp = (~y & pred).sum(axis=0).astype(np.float64)
    fn = (y & ~pred).sum(axis=0).astype(np.float64)
    tn = (~y & ~pred).sum(axis=0)
    precision, recall, f1 = _prf(tp, fp, fn)
    micro_p, micro_r, micro_f1 = (float(v) for v in _prf(tp.sum(), fp.sum(), fn.sum()))
    support = y.sum(axis=0)
    auc = [binary_auc(y[:, c], probs[:, c]) for c in range(len(class_names))]
    weights = support / support.sum() if support.sum() else np.zeros(len(class_names))
    metrics = {
        "accuracy": float((y == pred).all(axis=1).mean()),
        "precision_macro": float(precision.mean()),
        "recall_macro": float(recall.mean()),
        "f1_macro": float(f1.mean()),
        "f1_weighted": float((f1 * weights).sum()),
        "precision_micro": micro_p,
        "recall_micro": micro_r,
        "f1_micro": micro_f1,
        "auc_macro": _nanmean(auc),
        "auc_micro": binary_auc(y.ravel(), np.asarray(probs).ravel()),
    }
    per_class = {
        name: {
            "precision": float(precision[c]),
            "recall": float(recall[c]),
            "f1": float(f1[c]),
            "auc": auc[c],
            "support": int(support[c]),
        }
        for c, name in enumerate(class_names)
    }
    # one 2x2 matrix per class: [[TN, FP], [FN, TP]], sklearn's multilabel_confusion_matrix
    confusion = [
        [[int(tn[c]), int(fp[c])], [int(fn[c]), int(tp[c])]] for c in range(len(class_names))
    ]
    return Scores(metrics, per_class, confusion)


def score(y_true: np.ndarray, scores: np.ndarray, class_names: list[str]) -> Scores:
    """Single- or multi-label, from the shape of ``y_true``."""
    if np.asarray(y_true).ndim == 2:
        return multilabel_scores(y_true, scores, class_names)
    return single_label_scores(y_true, scores, class_names)
