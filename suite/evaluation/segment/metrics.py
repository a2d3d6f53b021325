"""Per-case segmentation metrics from MONAI: Dice, IoU (Jaccard), precision, recall and HD95 per class.

One case is an image or a volume of stacked slices (every function takes label maps of any rank).
The values come from ``monai.metrics``: ``compute_dice`` and ``compute_iou`` (``ignore_empty=False``),
``get_confusion_matrix`` + ``compute_confusion_matrix_metric`` ("precision", "sensitivity") and
``compute_hausdorff_distance(percentile=95)``, the 95th-percentile symmetric Hausdorff distance in
pixels between the masks' edges (mask XOR its erosion, face connectivity; exact Euclidean distances;
the larger of the two directed percentiles). They equal the suite's former hand-written metrics to
float32 rounding (tests/unit/evaluation/test_segment_metrics_monai.py keeps that code as reference).

Empty masks have a defined value rather than NaN, so means over cases never silently drop cases.
MONAI gives NaN or inf there; they are mapped explicitly:

- truth and prediction both empty: Dice = IoU = precision = recall = 1 and HD95 = 0 (nothing to
  find, nothing found). MONAI: Dice and IoU 1 (with ``ignore_empty=False``), precision and recall
  NaN (0/0), HD95 NaN;
- exactly one of them empty: Dice = IoU = precision = recall = 0, and HD95 is the case's diagonal in
  pixels (the largest distance it can hold). MONAI: Dice and IoU 0, the 0/0 ratio NaN, HD95 inf.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from monai.metrics import (
    compute_confusion_matrix_metric,
    compute_dice,
    compute_hausdorff_distance,
    compute_iou,
    get_confusion_matrix,
)

METRICS = ("dice", "iou", "precision", "recall", "hd95")


def _onehot(labels: np.ndarray, class_ids: Sequence[int]) -> torch.Tensor:
    """``(1, len(class_ids), *labels.shape)`` float one-hot of the chosen classes only."""
    return torch.from_numpy(np.stack([labels == k for k in class_ids])[None]).float()


def _scores(pred: torch.Tensor, truth: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every metric per channel of one-hot ``(1, K, ...)`` tensors, empty masks mapped."""
    spatial = tuple(range(2, pred.ndim))
    pred_any, truth_any = pred.amax(dim=spatial)[0] > 0, truth.amax(dim=spatial)[0] > 0
    both_empty = ~pred_any & ~truth_any
    # every channel is a class to score: the caller already left background out
    kw = {"include_background": True}
    confusion = get_confusion_matrix(pred, truth, **kw)
    with warnings.catch_warnings():
        # MONAI warns of every empty mask; the NaN/inf it returns for them is mapped below
        warnings.simplefilter("ignore", UserWarning)
        # ...and of an argument its own get_edge_surface_distance still passes (MONAI 1.5-1.6)
        warnings.filterwarnings("ignore", ".*always_return_as_numpy", FutureWarning)
        hd = compute_hausdorff_distance(pred, truth, percentile=95, **kw)[0].double()
    diagonal = math.sqrt(sum(s * s for s in pred.shape[2:]))
    out = {
        "dice": compute_dice(pred, truth, ignore_empty=False, **kw)[0],
        "iou": compute_iou(pred, truth, ignore_empty=False, **kw)[0],
        "precision": compute_confusion_matrix_metric("precision", confusion)[0],
        "recall": compute_confusion_matrix_metric("sensitivity", confusion)[0],
        "hd95": torch.where(both_empty, 0.0, torch.where(pred_any & truth_any, hd, diagonal)),
    }
    for name in ("precision", "recall"):  # 0/0: 1 if nothing was there to find, else 0
        out[name] = torch.where(out[name].isnan(), both_empty.to(out[name].dtype), out[name])
    return out


def case_metrics(
    pred: np.ndarray, truth: np.ndarray, class_ids: Sequence[int]
) -> dict[int, dict[str, float]]:
    """``{class id: metrics}`` for label maps ``pred`` and ``truth`` (ints, any rank)."""
    if pred.shape != truth.shape:
        raise ValueError(f"prediction {pred.shape} and truth {truth.shape} differ in shape")
    scores = _scores(_onehot(pred, class_ids), _onehot(truth, class_ids))
    return {k: {m: float(scores[m][c]) for m in METRICS} for c, k in enumerate(class_ids)}


def binary_metrics(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """All of :data:`METRICS` for one class in one case (boolean masks of the same shape)."""
    as_ids = (pred.astype(bool).astype(np.uint8), truth.astype(bool).astype(np.uint8))
    return case_metrics(*as_ids, [1])[1]


def hd95(pred: np.ndarray, truth: np.ndarray) -> float:
    """95th-percentile symmetric surface distance in pixels between two boolean masks."""
    return binary_metrics(pred, truth)["hd95"]


def quick_dice(pred: np.ndarray, truth: np.ndarray, class_ids: Sequence[int]) -> float:
    """Mean Dice over classes, for model selection (no HD95: it is the slow part)."""
    dice = compute_dice(_onehot(pred, class_ids), _onehot(truth, class_ids),
                        include_background=True, ignore_empty=False)  # fmt: skip
    return float(dice.mean())
