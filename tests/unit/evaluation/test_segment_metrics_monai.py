"""metrics.py (MONAI's Dice, IoU, confusion-matrix precision/recall and HD95) against the suite's
pre-MONAI hand-written metrics, kept here as the reference: same values on a fixed set of
predictions, edge cases included, within float32 rounding.

The reference below is the code metrics.py held before it moved to MONAI (commit 7608949).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest
from scipy import ndimage

from suite.evaluation.segment.metrics import METRICS, binary_metrics, case_metrics, quick_dice

# MONAI computes in float32 and torch.quantile; the reference in float64 and np.percentile
RTOL, ATOL = 1e-6, 1e-6


def _ratio(num: float, den: float, both_empty: bool) -> float:
    if den == 0:
        return 1.0 if both_empty else 0.0
    return num / den


def _surface(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def _old_hd95(pred: np.ndarray, truth: np.ndarray) -> float:
    pred, truth = pred.astype(bool), truth.astype(bool)
    if not pred.any() and not truth.any():
        return 0.0
    if not pred.any() or not truth.any():
        return math.sqrt(sum(s * s for s in pred.shape))
    sp, st = _surface(pred), _surface(truth)
    to_truth = ndimage.distance_transform_edt(~st)[sp]
    to_pred = ndimage.distance_transform_edt(~sp)[st]
    return float(max(np.percentile(to_truth, 95), np.percentile(to_pred, 95)))


def _old_binary_metrics(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
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
        "hd95": _old_hd95(pred, truth),
    }


def _old_quick_dice(pred: np.ndarray, truth: np.ndarray, class_ids: Sequence[int]) -> float:
    values = []
    for k in class_ids:
        p, t = pred == k, truth == k
        tp = np.count_nonzero(p & t)
        den = np.count_nonzero(p) + np.count_nonzero(t)
        values.append(_ratio(2 * tp, den, den == 0))
    return float(np.mean(values))


def _square(shape: tuple[int, ...], top: int, left: int, side: int, label: int = 1) -> np.ndarray:
    out = np.zeros(shape, np.uint8)
    out[top : top + side, left : left + side] = label
    return out


def _cases() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(prediction, truth) label maps with classes 0 (background), 1 and 2."""
    rng = np.random.default_rng(16)
    cases: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for i in range(4):  # dense random labels, the worst case for surfaces
        cases[f"random16_{i}"] = tuple(rng.integers(0, 3, (2, 16, 16)).astype(np.uint8))  # type: ignore[assignment]
    sparse = (rng.random((2, 32, 32)) < 0.05) * rng.integers(1, 3, (2, 32, 32))
    cases["sparse32"] = (sparse[0].astype(np.uint8), sparse[1].astype(np.uint8))
    truth = _square((32, 32), 5, 5, 10) + _square((32, 32), 20, 18, 8, label=2)
    pred = _square((32, 32), 5, 8, 10) + _square((32, 32), 22, 17, 9, label=2)
    cases["shifted_squares"] = (pred, truth)
    # masks on the image border: the edge counts as outside for both surface definitions
    cases["border"] = (_square((16, 16), 0, 0, 6) + _square((16, 16), 10, 10, 6, label=2),
                       _square((16, 16), 0, 0, 8) + _square((16, 16), 11, 9, 5, label=2))  # fmt: skip
    empty = np.zeros((16, 16), np.uint8)
    blob = _square((16, 16), 4, 4, 5) + _square((16, 16), 10, 10, 3, label=2)
    cases["empty_prediction"] = (empty, blob)
    cases["empty_truth"] = (blob, empty)
    cases["both_empty"] = (empty, empty.copy())
    one, other = empty.copy(), empty.copy()
    one[2, 3], other[5, 7], one[12, 12], other[12, 12] = 1, 1, 2, 2
    cases["single_pixels"] = (one, other)
    cases["single_pixel_vs_blob"] = (one, blob)
    cases["odd_shape"] = (rng.integers(0, 3, (15, 17)).astype(np.uint8),
                          rng.integers(0, 3, (15, 17)).astype(np.uint8))  # fmt: skip
    volume = np.zeros((3, 16, 16), np.uint8)  # a stacked volume (data.cases=group): 3D metrics
    volume[:, 3:9, 4:12] = 1
    shifted = np.roll(volume, 2, axis=2)
    shifted[1, 12:15, 12:15] = 2  # class 2 only predicted: empty truth for that class
    cases["volume_3d"] = (shifted, volume)
    return cases


CASES = _cases()


@pytest.mark.parametrize("name", list(CASES))
def test_monai_metrics_reproduce_the_hand_written_ones(name: str) -> None:
    pred, truth = CASES[name]
    new = case_metrics(pred, truth, [1, 2])
    for k in (1, 2):
        old = _old_binary_metrics(pred == k, truth == k)
        assert set(new[k]) == set(METRICS)
        for m in METRICS:
            assert new[k][m] == pytest.approx(old[m], rel=RTOL, abs=ATOL), (k, m)
            assert isinstance(new[k][m], float) and math.isfinite(new[k][m])
    assert quick_dice(pred, truth, [1, 2]) == pytest.approx(
        _old_quick_dice(pred, truth, [1, 2]), rel=RTOL, abs=ATOL
    )


def test_binary_metrics_match_on_every_case() -> None:
    for name, (pred, truth) in CASES.items():
        old, new = _old_binary_metrics(pred > 0, truth > 0), binary_metrics(pred > 0, truth > 0)
        assert new == pytest.approx(old, rel=RTOL, abs=ATOL), name
