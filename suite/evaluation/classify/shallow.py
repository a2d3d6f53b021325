"""Shallow classifiers on frozen features: seed 004's heads, in scikit-learn.

Seed 004 (fededemo, ORT thesis) trained its final classifiers on the closed Cogniflow platform; the
settings it records are used here as defaults (``ShallowConfig``): an elastic-net logistic
regression (C 10, l1_ratio 0.5, saga, 300 iterations; multinomial rather than the recorded
one-vs-rest, which recent scikit-learn no longer offers for LogisticRegression), an RBF SVM (C 10, gamma "scale", tol 0.01,
1000 iterations) and a feed-forward net ([256] x 4 ReLU, L2 0.02, Adam lr 1e-3, batch 64, at most
300 epochs). Features are standardised first (inside the pipeline, fitted on training rows only).
Multi-label rows get one binary model per class (``OneVsRestClassifier``).
"""

from __future__ import annotations

import warnings

import numpy as np
import sklearn
from sklearn.base import ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from suite.evaluation.classify.config import ShallowConfig

SHALLOW = ("logreg", "svm", "mlp")


def make_head(name: str, cfg: ShallowConfig, seed: int) -> ClassifierMixin:
    if name == "logreg":
        # scikit-learn >= 1.8 picks elastic-net from l1_ratio alone and deprecates `penalty`;
        # older releases ignore l1_ratio unless penalty="elasticnet"
        old = tuple(int(p) for p in sklearn.__version__.split(".")[:2]) < (1, 8)
        return LogisticRegression(
            **({"penalty": "elasticnet"} if old else {}),
            C=cfg.logreg_c,
            l1_ratio=cfg.logreg_l1_ratio,
            solver="saga",
            max_iter=cfg.logreg_max_iter,
            random_state=seed,
        )
    if name == "svm":
        return SVC(
            C=cfg.svm_c,
            kernel="rbf",
            gamma="scale",
            tol=0.01,
            max_iter=cfg.svm_max_iter,
            random_state=seed,
        )
    if name == "mlp":
        return MLPClassifier(
            hidden_layer_sizes=tuple(cfg.mlp_hidden),
            alpha=cfg.mlp_alpha,
            learning_rate_init=cfg.mlp_lr,
            batch_size=cfg.mlp_batch_size,
            max_iter=cfg.mlp_max_iter,
            random_state=seed,
        )
    raise ValueError(f"unknown shallow head {name!r}")  # the config's Literal rules this out


def _class_scores(model: ClassifierMixin, x: np.ndarray, num_classes: int) -> np.ndarray:
    """``(N, K)`` scores for every class id, also those absent from the training rows."""
    classes = model.classes_ if hasattr(model, "classes_") else np.arange(num_classes)
    proba = not isinstance(model[-1], SVC)
    if proba:
        raw = model.predict_proba(x)
    else:  # SVC: one-vs-rest decision values (monotone in the class score, enough for AUC)
        raw = model.decision_function(x)
        if raw.ndim == 1:  # two classes: the value is the second class's margin
            raw = np.stack([-raw, raw], axis=1)
    # a class the head never saw scores below every seen one
    out = np.full((len(x), num_classes), 0.0 if proba else float(raw.min()) - 1.0)
    out[:, np.asarray(classes, dtype=np.int64)] = raw
    return out


def shallow_scores(
    name: str,
    train: np.ndarray,
    train_labels: np.ndarray,
    test: np.ndarray,
    *,
    num_classes: int,
    cfg: ShallowConfig,
    seed: int,
) -> np.ndarray:
    """Fit head ``name`` on the training rows; its ``(N_test, K)`` class scores."""
    head = make_head(name, cfg, seed)
    if train_labels.ndim == 2:  # multi-label: one binary model per class
        model = make_pipeline(StandardScaler(), OneVsRestClassifier(head))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(train, train_labels.astype(np.int64))
        if name == "svm":  # margins through a sigmoid: the 0.5 decision threshold is margin 0
            return 1.0 / (1.0 + np.exp(-model.decision_function(test)))
        return model.predict_proba(test)
    model = make_pipeline(StandardScaler(), head)
    with warnings.catch_warnings():
        # capped iterations are the recorded setting; sklearn's warning would only say so
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(train, train_labels)
    return _class_scores(model, test, num_classes)
