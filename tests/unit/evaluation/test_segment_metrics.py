"""Segmentation metrics against cases computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from suite.evaluation.segment.metrics import binary_metrics, case_metrics, hd95, quick_dice


def square(top: int, left: int, side: int, size: int = 32) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    mask[top : top + side, left : left + side] = True
    return mask


def test_overlap_metrics_of_squares_shifted_by_three() -> None:
    # two 10x10 squares, one shifted 3 px right: 7x10 = 70 px overlap, 30 px only in each
    truth, pred = square(5, 5, 10), square(5, 8, 10)
    m = binary_metrics(pred, truth)
    assert m["dice"] == pytest.approx(2 * 70 / (100 + 100))
    assert m["iou"] == pytest.approx(70 / 130)
    assert m["precision"] == pytest.approx(70 / 100)
    assert m["recall"] == pytest.approx(70 / 100)


def test_precision_and_recall_differ_when_the_prediction_is_inside_the_truth() -> None:
    truth, pred = square(4, 4, 10), square(6, 6, 5)  # 25 px, all inside the 100 px truth
    m = binary_metrics(pred, truth)
    assert (m["precision"], m["recall"]) == pytest.approx((1.0, 0.25))
    assert m["dice"] == pytest.approx(50 / 125) and m["iou"] == pytest.approx(25 / 100)


def test_hd95_of_squares_shifted_by_three_pixels() -> None:
    # By hand: the shifted square's 36 surface pixels lie 0 (14 of them), 1 (4), 2 (4) or 3 (14)
    # px from the other's surface; the 95th percentile of those 36 distances is 3, both ways.
    assert hd95(square(5, 8, 10), square(5, 5, 10)) == pytest.approx(3.0)
    assert hd95(square(5, 5, 10), square(12, 5, 10)) == pytest.approx(7.0)


def test_hd95_ignores_a_single_outlier_pixel_the_plain_hausdorff_would_not() -> None:
    truth = square(2, 2, 10)
    pred = truth.copy()
    pred[30, 30] = True  # 1 of 37 surface pixels, ~28 px away
    assert hd95(pred, truth) == pytest.approx(0.0)
    far = square(2, 2, 10)
    far[20:30, 20:30] = True  # half the surface far away: HD95 is large now
    assert hd95(far, truth) > 10


def test_hd95_of_single_pixels_is_their_distance() -> None:
    a, b = np.zeros((20, 20), bool), np.zeros((20, 20), bool)
    a[2, 3], b[5, 7] = True, True
    assert hd95(a, b) == pytest.approx(5.0)  # a 3-4-5 triangle


def test_empty_masks_have_defined_values() -> None:
    empty, full = np.zeros((16, 16), bool), square(4, 4, 4, size=16)
    both = binary_metrics(empty, empty)
    assert both == {"dice": 1.0, "iou": 1.0, "precision": 1.0, "recall": 1.0, "hd95": 0.0}
    missed = binary_metrics(empty, full)  # nothing predicted where there is something
    spurious = binary_metrics(full, empty)  # something predicted where there is nothing
    diagonal = math.sqrt(16**2 + 16**2)
    for m in (missed, spurious):
        assert (m["dice"], m["iou"], m["precision"], m["recall"]) == (0.0, 0.0, 0.0, 0.0)
        assert m["hd95"] == pytest.approx(diagonal)


def test_case_metrics_per_class_and_volumes() -> None:
    truth = np.zeros((2, 16, 16), np.uint8)  # a two-slice volume, classes 1 and 2
    truth[:, 2:6, 2:6] = 1
    truth[1, 10:14, 10:14] = 2
    pred = truth.copy()
    pred[1, 10:14, 10:12] = 0  # half of class 2 missed
    scores = case_metrics(pred, truth, [1, 2])
    assert scores[1]["dice"] == 1.0 and scores[1]["hd95"] == 0.0
    assert scores[2]["recall"] == pytest.approx(0.5) and scores[2]["precision"] == 1.0
    assert scores[2]["dice"] == pytest.approx(2 * 8 / (8 + 16))
    assert quick_dice(pred, truth, [1, 2]) == pytest.approx((1.0 + 2 * 8 / 24) / 2)


def test_shape_mismatch_is_refused() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        binary_metrics(np.zeros((4, 4), bool), np.zeros((4, 5), bool))
