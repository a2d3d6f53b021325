"""Sample-based generator metrics on feature vectors: KID, precision/recall, density/coverage.

The Fréchet distance needs only mergeable statistics (:mod:`suite.evaluation.frechet`); these need
the features themselves (a seeded subsample of each set, at most ``--max-samples`` rows):

- KID, the kernel inception distance (Bińkowski et al. 2018, "Demystifying MMD GANs", sec. 3 and
  appendix B): the unbiased estimator of the squared MMD with the cubic polynomial kernel
  ``k(x, y) = (x.y / d + 1)^3``, averaged over random subsets, reported as mean and standard
  deviation over the subsets (their official code and clean-fid: 100 subsets of 1000).
- Precision and recall (Kynkäänniemi et al. 2019, "Improved precision and recall metric for
  assessing generative models", eq. 1-3): each set's manifold is the union of balls around its
  samples with radius the distance to the k-th nearest neighbour (k = 3). Precision is the share of
  fake samples inside the real manifold, recall the share of real samples inside the fake one.
  Their code counts a sample on the sphere as inside (``<=``), so does this one.
- Density and coverage (Naeem et al. 2020, "Reliable fidelity and diversity metrics for generative
  models", eq. 3-4, k = 5): density counts how many real balls contain each fake sample (divided
  by k; not bounded by 1, ~1 when the sets match), coverage is the share of real balls that hold at
  least one fake sample. Comparisons are strict (``<``), as in their reference code
  (clovaai/generative-evaluation-prdc), so density and coverage match it digit for digit.

Distances are Euclidean, computed in float64 in row blocks, so a 10k x 10k comparison never holds
more than one block of the distance matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from suite.errors import DataError

PR_K = 3  # Kynkäänniemi et al. 2019, sec. 3: k = 3 is robust for their sample sizes
DC_K = 5  # Naeem et al. 2020, sec. 4: k = 5
KID_SUBSETS = 100  # Bińkowski et al. 2018's code (and clean-fid, torch-fidelity)
KID_SUBSET_SIZE = 1000
_BLOCK = 1024  # rows of a distance block: 1024 x 10k float64 is 80 MB


@dataclass(frozen=True, slots=True)
class KID:
    """Mean and standard deviation of the unbiased MMD^2 over ``subsets`` subsets of ``size``."""

    mean: float
    std: float
    subsets: int
    size: int


@dataclass(frozen=True, slots=True)
class PRDC:
    """Precision, recall (k = ``pr_k``), density and coverage (k = ``dc_k``)."""

    precision: float
    recall: float
    density: float
    coverage: float
    pr_k: int
    dc_k: int


def _as_features(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise DataError(f"{name} features must be a non-empty (N, D) array, got {x.shape}")
    return x


def polynomial_mmd2(x: np.ndarray, y: np.ndarray, degree: int = 3, coef0: float = 1.0) -> float:
    """Unbiased MMD^2 between ``x`` (m, d) and ``y`` (n, d) with ``k = (x.y / d + coef0)^degree``.

    Bińkowski et al. 2018, eq. 2 (the U-statistic): the within-set sums leave out the diagonal,
    the cross term is the mean over all pairs. It can be slightly negative.
    """
    d = x.shape[1]
    m, n = len(x), len(y)
    if m < 2 or n < 2:
        raise DataError(f"KID needs at least 2 samples per set, got {m} and {n}")
    kxx = (x @ x.T / d + coef0) ** degree
    kyy = (y @ y.T / d + coef0) ** degree
    kxy = (x @ y.T / d + coef0) ** degree
    xx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    yy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(xx + yy - 2 * kxy.mean())


def kid(
    real: np.ndarray,
    fake: np.ndarray,
    *,
    subsets: int = KID_SUBSETS,
    subset_size: int = KID_SUBSET_SIZE,
    seed: int = 0,
) -> KID:
    """KID (Bińkowski et al. 2018): the polynomial-kernel MMD^2 over random subsets.

    Each subset draws ``min(subset_size, len(real), len(fake))`` rows from each set without
    replacement (independently per subset, as their code does), from a generator seeded with
    ``seed``, so the result is reproducible.
    """
    x, y = _as_features(real, "real"), _as_features(fake, "fake")
    if x.shape[1] != y.shape[1]:
        raise DataError(f"real and fake features differ in width: {x.shape[1]} vs {y.shape[1]}")
    if subsets < 1 or subset_size < 2:
        raise DataError(
            f"KID needs at least 1 subset of at least 2 samples (got {subsets} x {subset_size})",
            "pass --kid-subsets >= 1 and --kid-subset-size >= 2",
        )
    size = min(subset_size, len(x), len(y))
    rng = np.random.default_rng(seed)
    values = np.empty(subsets, dtype=np.float64)
    for i in range(subsets):
        xs = x[rng.choice(len(x), size, replace=False)]
        ys = y[rng.choice(len(y), size, replace=False)]
        values[i] = polynomial_mmd2(xs, ys)
    return KID(float(values.mean()), float(values.std()), subsets, size)


def pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances ``(len(a), len(b))`` in float64 (clipped at 0 against rounding)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.sqrt(np.maximum(sq, 0.0))


def knn_radii(x: np.ndarray, k: int) -> np.ndarray:
    """Distance from each row of ``x`` to its k-th nearest other row (the manifold ball radii).

    The row itself is at distance 0 and is the 0-th smallest, so the k-th neighbour is at sorted
    position k, as in both papers' code.
    """
    x = np.asarray(x, dtype=np.float64)
    if len(x) <= k:
        raise DataError(
            f"k-NN manifolds with k = {k} need more than {k} samples per set, got {len(x)}",
            f"evaluate at least {k + 1} real and {k + 1} fake images",
        )
    radii = np.empty(len(x), dtype=np.float64)
    for lo in range(0, len(x), _BLOCK):
        d = pairwise_distances(x[lo : lo + _BLOCK], x)
        radii[lo : lo + _BLOCK] = np.partition(d, k, axis=1)[:, k]
    return radii


def prdc(real: np.ndarray, fake: np.ndarray, *, pr_k: int = PR_K, dc_k: int = DC_K) -> PRDC:
    """Precision/recall (Kynkäänniemi et al. 2019) and density/coverage (Naeem et al. 2020)."""
    x, y = _as_features(real, "real"), _as_features(fake, "fake")
    if x.shape[1] != y.shape[1]:
        raise DataError(f"real and fake features differ in width: {x.shape[1]} vs {y.shape[1]}")
    real_pr, fake_pr = knn_radii(x, pr_k), knn_radii(y, pr_k)
    real_dc = real_pr if dc_k == pr_k else knn_radii(x, dc_k)

    fake_in_real = np.zeros(len(y), dtype=bool)  # precision: inside some real ball (k = pr_k)
    real_in_fake = np.zeros(len(x), dtype=bool)  # recall: inside some fake ball
    density_count = np.zeros(len(y), dtype=np.int64)  # real balls (k = dc_k) holding each fake
    covered = np.zeros(len(x), dtype=bool)  # coverage: nearest fake inside the real ball
    for lo in range(0, len(x), _BLOCK):
        d = pairwise_distances(x[lo : lo + _BLOCK], y)  # (block of real, fake)
        fake_in_real |= (d <= real_pr[lo : lo + _BLOCK, None]).any(axis=0)
        real_in_fake[lo : lo + _BLOCK] = (d <= fake_pr[None, :]).any(axis=1)
        density_count += (d < real_dc[lo : lo + _BLOCK, None]).sum(axis=0)
        covered[lo : lo + _BLOCK] = d.min(axis=1) < real_dc[lo : lo + _BLOCK]
    return PRDC(
        precision=float(fake_in_real.mean()),
        recall=float(real_in_fake.mean()),
        density=float(density_count.mean() / dc_k),
        coverage=float(covered.mean()),
        pr_k=pr_k,
        dc_k=dc_k,
    )
