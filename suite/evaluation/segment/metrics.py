"""Per-case segmentation metrics: Dice, IoU (Jaccard), precision, recall and HD95 per class.

Overlap metrics come from the confusion counts of one class in one case (an image, or a volume of
stacked slices: every function here takes arrays of any rank). HD95 is the 95th-percentile symmetric
Hausdorff distance between the two masks' surfaces, in pixels, as in MONAI's
``compute_hausdorff_distance(percentile=95)``: surface pixels are the mask minus its erosion, the
distance of each surface pixel of one mask to the nearest surface pixel of the other comes from a
Euclidean distance transform (scipy), and HD95 is the larger of the two directed 95th percentiles.

Empty masks have a defined value rather than NaN, so means over cases never silently drop cases:

- truth and prediction both empty: Dice = IoU = precision = recall = 1 and HD95 = 0 (nothing to
  find, nothing found);
- exactly one of them empty: every ratio whose denominator is 0 is 0, so Dice = IoU = precision =
  recall = 0, and HD95 is the case's diagonal in pixels (the largest distance it can hold).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

METRICS = ("dice", "iou", "precision", "recall", "hd95")


def _ratio(num: float, den: float, both_empty: bool) -> float:
    if den == 0:
        return 1.0 if both_empty else 0.0
    return num / den


def surface(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` with a face-neighbour outside it (the image edge counts as outside)."""
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def hd95(pred: np.ndarray, truth: np.ndarray) -> float:
    """95th-percentile symmetric surface distance in pixels between two boolean masks."""
    pred, truth = pred.astype(bool), truth.astype(bool)
    if not pred.any() and not truth.any():
        return 0.0
    if not pred.any() or not truth.any():
        return math.sqrt(sum(s * s for s in pred.shape))
    sp, st = surface(pred), surface(truth)
    # distance_transform_edt gives each pixel's distance to the nearest zero: zeros = the surface
    to_truth = ndimage.distance_transform_edt(~st)[sp]
    to_pred = ndimage.distance_transform_edt(~sp)[st]
    return float(max(np.percentile(to_truth, 95), np.percentile(to_pred, 95)))


def binary_metrics(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """All of :data:`METRICS` for one class in one case (boolean masks of the same shape)."""
    if pred.shape != truth.shape:
        raise ValueError(f"prediction {pred.shape} and truth {truth.shape} differ in shape")
    pred, truth = pred.astype(bool), truth.astype(bool)
    tp = float(np.count_nonzero(pred & truth))
    fp = float(np.count_nonzero(pred & ~truth))
    fn = float(np.count_nonzero(~pred & truth))
    both_empty = not pred.any() and not truth.any()
    return {
        "dice": _ratio(2 * tp, 2 * tp + fp + fn, both_empty),
        "iou": _ratio(tp, tp + fp + fn, both_empty),
        "precision": _ratio(tp, tp + fp, both_empty),
        "recall": _ratio(tp, tp + fn, both_empty),
        "hd95": hd95(pred, truth),
    }


def case_metrics(
    pred: np.ndarray, truth: np.ndarray, class_ids: Sequence[int]
) -> dict[int, dict[str, float]]:
    """``{class id: metrics}`` for label maps ``pred`` and ``truth`` (ints, any rank)."""
    return {k: binary_metrics(pred == k, truth == k) for k in class_ids}


def quick_dice(pred: np.ndarray, truth: np.ndarray, class_ids: Sequence[int]) -> float:
    """Mean Dice over classes, for model selection (no HD95: it is the slow part)."""
    values = []
    for k in class_ids:
        p, t = pred == k, truth == k
        tp = np.count_nonzero(p & t)
        den = np.count_nonzero(p) + np.count_nonzero(t)
        values.append(_ratio(2 * tp, den, den == 0))
    return float(np.mean(values))
