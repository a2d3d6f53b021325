"""KID, precision/recall and density/coverage on cases small enough to check by hand.

KID is Bińkowski et al. 2018's unbiased polynomial-kernel MMD^2; precision/recall Kynkäänniemi et
al. 2019's k-NN manifolds; density/coverage Naeem et al. 2020's. Each hand case below spells out
the arithmetic in its comments.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from suite.errors import DataError
from suite.evaluation.generator.metrics import kid, knn_radii, polynomial_mmd2, prdc


def test_kid_one_dimensional_hand_case() -> None:
    # d = 1, k(a, b) = (a b + 1)^3. X = {0, 1}, Y = {0, 2}.
    # within X (off-diagonal): k(0, 1) = 1 -> mean 1; within Y: k(0, 2) = 1 -> mean 1;
    # across: k(0,0) = 1, k(0,2) = 1, k(1,0) = 1, k(1,2) = 27 -> mean 7.5.
    # MMD^2 = 1 + 1 - 2 * 7.5 = -13 (the unbiased estimate can be negative).
    x = np.array([[0.0], [1.0]])
    y = np.array([[0.0], [2.0]])
    assert polynomial_mmd2(x, y) == pytest.approx(-13.0, abs=1e-12)
    # one subset of all rows (row order does not matter): mean -13, std 0
    result = kid(x, y, subsets=1, subset_size=2)
    assert result.mean == pytest.approx(-13.0, abs=1e-12)
    assert result.std == 0.0 and result.size == 2 and result.subsets == 1


def test_polynomial_mmd_matches_the_definition_term_by_term() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(5, 3)), rng.normal(1.0, 2.0, size=(4, 3))

    def k(a: np.ndarray, b: np.ndarray) -> float:
        return (a @ b / 3 + 1) ** 3

    xx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(5), 2)) / (5 * 4)
    yy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(4), 2)) / (4 * 3)
    xy = sum(k(a, b) for a in x for b in y) / (5 * 4)
    assert polynomial_mmd2(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-12)


def test_kid_is_near_zero_for_one_distribution_and_grows_with_a_shift() -> None:
    rng = np.random.default_rng(1)
    real = rng.normal(size=(400, 8))
    same = rng.normal(size=(400, 8))
    shifted = rng.normal(0.5, 1.0, size=(400, 8))
    a = kid(real, same, subsets=20, subset_size=200, seed=3)
    b = kid(real, shifted, subsets=20, subset_size=200, seed=3)
    assert abs(a.mean) < 3 * a.std + 1e-3  # unbiased: zero within its spread
    assert b.mean > 10 * max(abs(a.mean), a.std)
    assert kid(real, shifted, subsets=20, subset_size=200, seed=3) == b  # seeded: reproducible
    assert a.size == 200


def test_prdc_one_dimensional_hand_case() -> None:
    # k = 1 everywhere. real = {0, 1, 3, 7}: 1-NN radii 1, 1, 2, 4. fake = {0.5, 2.5, 12}: 2, 2, 9.5.
    # precision (fake inside some real ball, <=): 0.5 in B(0, 1); 2.5 in B(3, 2); 12 is 5 from 7
    #   (radius 4) -> 2/3.
    # recall (real inside some fake ball): 0, 1 in B(0.5, 2); 3 in B(2.5, 2); 7 in B(12, 9.5) -> 1.
    # density (real balls holding each fake, strict <, / k): 0.5 -> B(0), B(1) = 2; 2.5 -> B(3) = 1;
    #   12 -> 0; mean 1 -> 1.0.
    # coverage (nearest fake strictly inside the real ball): 0 (0.5 < 1), 1 (0.5 < 1), 3 (0.5 < 2)
    #   yes; 7: nearest fake 4.5 (2.5) not < 4 -> 3/4.
    real = np.array([[0.0], [1.0], [3.0], [7.0]])
    fake = np.array([[0.5], [2.5], [12.0]])
    np.testing.assert_allclose(knn_radii(real, 1), [1, 1, 2, 4])
    result = prdc(real, fake, pr_k=1, dc_k=1)
    assert result.precision == pytest.approx(2 / 3)
    assert result.recall == 1.0
    assert result.density == pytest.approx(1.0)
    assert result.coverage == pytest.approx(0.75)


def test_identical_sets_have_full_precision_recall_coverage() -> None:
    x = np.random.default_rng(2).normal(size=(60, 4))
    result = prdc(x, x.copy())  # k = 3 and 5
    assert (result.precision, result.recall, result.coverage) == (1.0, 1.0, 1.0)
    assert result.pr_k == 3 and result.dc_k == 5
    # every fake point is inside its own real ball plus, on average, about k - 1 others'
    assert 0.5 < result.density < 2.0


def test_disjoint_sets_score_zero_and_outliers_dont_count() -> None:
    rng = np.random.default_rng(4)
    real = rng.normal(size=(40, 3))
    far = rng.normal(size=(30, 3)) + 100.0
    result = prdc(real, far)
    assert (result.precision, result.recall, result.density, result.coverage) == (0, 0, 0, 0)
    # half the fakes on the real data, half far away: precision and density drop by about half
    half = np.concatenate([real[:15] + 1e-3, far[:15]])
    mixed = prdc(real, half)
    assert mixed.precision == pytest.approx(0.5)
    assert 0 < mixed.coverage < 1


def test_too_few_samples_for_the_neighbourhoods_is_one_error() -> None:
    x = np.zeros((3, 2))
    with pytest.raises(DataError, match="k = 3 need more than 3 samples"):
        prdc(x, np.ones((10, 2)))
    with pytest.raises(DataError, match="differ in width"):
        kid(np.zeros((4, 2)), np.zeros((4, 3)))
