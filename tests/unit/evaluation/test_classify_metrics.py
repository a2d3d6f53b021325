"""Classification metrics against scikit-learn, and the kNN vote."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from suite.evaluation.classify.knn import knn_scores
from suite.evaluation.classify.metrics import binary_auc, multilabel_scores, single_label_scores


def _random_case(seed: int, n: int = 300, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.standard_normal((n, k)) + 1.5 * np.eye(k)[y] * rng.random((n, 1))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, probs


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_single_label_metrics_match_sklearn(seed: int) -> None:
    y, probs = _random_case(seed)
    names = [f"c{i}" for i in range(probs.shape[1])]
    pred = probs.argmax(axis=1)
    s = single_label_scores(y, probs, names)
    m = s.metrics
    labels = list(range(len(names)))
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    for avg in ("macro", "weighted", "micro"):
        assert m[f"f1_{avg}"] == pytest.approx(
            skm.f1_score(y, pred, labels=labels, average=avg, zero_division=0)
        )
    for avg in ("macro", "micro"):
        assert m[f"precision_{avg}"] == pytest.approx(
            skm.precision_score(y, pred, labels=labels, average=avg, zero_division=0)
        )
        assert m[f"recall_{avg}"] == pytest.approx(
            skm.recall_score(y, pred, labels=labels, average=avg, zero_division=0)
        )
    assert m["auc_ovr_macro"] == pytest.approx(
        skm.roc_auc_score(y, probs, multi_class="ovr", average="macro")
    )
    np.testing.assert_array_equal(s.confusion, skm.confusion_matrix(y, pred, labels=labels))
    p, r, f, support = skm.precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    for c, name in enumerate(names):
        assert s.per_class[name]["precision"] == pytest.approx(p[c])
        assert s.per_class[name]["recall"] == pytest.approx(r[c])
        assert s.per_class[name]["f1"] == pytest.approx(f[c])
        assert s.per_class[name]["support"] == support[c]


def test_absent_class_keeps_the_other_metrics() -> None:
    y, probs = _random_case(3, k=4)
    keep = y != 3  # class 3 never occurs in the evaluated rows
    s = single_label_scores(y[keep], probs[keep], ["a", "b", "c", "d"])
    assert np.isnan(s.per_class["d"]["auc"]) and s.per_class["d"]["support"] == 0
    expected = np.mean([skm.roc_auc_score(y[keep] == c, probs[keep, c]) for c in range(3)])
    assert s.metrics["auc_ovr_macro"] == pytest.approx(expected)


def test_binary_auc_counts_ties_half() -> None:
    y = np.array([0, 1, 0, 1, 1, 0])
    score = np.array([0.1, 0.4, 0.4, 0.8, 0.4, 0.2])
    assert binary_auc(y, score) == pytest.approx(skm.roc_auc_score(y, score))
    assert np.isnan(binary_auc(np.ones(3), np.arange(3)))


def test_multilabel_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random((200, 4)) < 0.3).astype(np.float32)
    probs = np.clip(0.6 * y + 0.5 * rng.random((200, 4)), 0, 1)
    s = multilabel_scores(y, probs, ["a", "b", "c", "d"])
    pred = (probs >= 0.5).astype(int)
    m = s.metrics
    assert m["auc_macro"] == pytest.approx(skm.roc_auc_score(y, probs, average="macro"))
    assert m["auc_micro"] == pytest.approx(skm.roc_auc_score(y, probs, average="micro"))
    for avg in ("macro", "micro", "weighted"):
        assert m[f"f1_{avg}"] == pytest.approx(skm.f1_score(y, pred, average=avg, zero_division=0))
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    np.testing.assert_array_equal(s.confusion, skm.multilabel_confusion_matrix(y, pred))


def test_knn_votes_are_temperature_weighted_cosine() -> None:
    # two training rows near the query (class 0, similar 0.99 and 0.6) and one of class 1
    # exactly aligned (similarity 1): with k=3 the weights exp(sim / T) decide
    train = np.array([[1.0, 0.14], [1.0, 1.33], [1.0, 0.0]])
    labels = np.array([0, 0, 1])
    query = np.array([[2.0, 0.0]])  # length does not matter: cosine
    sims = (train / np.linalg.norm(train, axis=1, keepdims=True)) @ np.array([1.0, 0.0])
    for t in (0.07, 1.0):
        w = np.exp(sims / t)
        expected = np.array([w[:2].sum(), w[2]]) / w.sum()
        got = knn_scores(train, labels, query, num_classes=2, k=3, temperature=t)
        np.testing.assert_allclose(got[0], expected, rtol=1e-5)
    # k=1: only the nearest (class 1) votes
    np.testing.assert_allclose(knn_scores(train, labels, query, num_classes=2, k=1)[0], [0, 1])
    # a low temperature lets the single closest neighbour win, a high one lets the majority win
    assert knn_scores(train, labels, query, num_classes=2, k=3, temperature=0.01)[0].argmax() == 1
    assert knn_scores(train, labels, query, num_classes=2, k=3, temperature=10)[0].argmax() == 0


def test_knn_multilabel_votes_with_label_vectors() -> None:
    train = np.eye(3, dtype=np.float32)
    labels = np.array([[1, 0], [1, 1], [0, 1]], dtype=np.float32)
    got = knn_scores(train, labels, np.array([[1.0, 1.0, 0.0]]), num_classes=2, k=2)
    np.testing.assert_allclose(got[0], [1.0, 0.5], rtol=1e-6)  # equal weights: mean of vectors
