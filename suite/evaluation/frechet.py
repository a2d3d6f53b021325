"""The Fréchet distance between two Gaussians fitted to features (Heusel et al. 2017, FID).

Statistics are kept as count, sum and sum of outer products, so per-shard statistics computed on
different workers merge exactly before the distance is taken.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class FeatureStats:
    """Sufficient statistics of a feature set: n, sum (D,), sum of outer products (D, D), float64."""

    n: int
    total: np.ndarray
    outer: np.ndarray

    @classmethod
    def of(cls, features: np.ndarray) -> FeatureStats:
        x = np.asarray(features, dtype=np.float64)
        return cls(len(x), x.sum(axis=0), x.T @ x)

    def merge(self, other: FeatureStats) -> FeatureStats:
        return FeatureStats(self.n + other.n, self.total + other.total, self.outer + other.outer)

    @property
    def mean(self) -> np.ndarray:
        return self.total / self.n

    @property
    def cov(self) -> np.ndarray:
        """Unbiased covariance (n - 1), as numpy.cov and pytorch-fid."""
        mu = self.mean
        return (self.outer - self.n * np.outer(mu, mu)) / (self.n - 1)


def frechet_distance(a: FeatureStats, b: FeatureStats) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2) (Heusel et al., 2017), the quantity
    pytorch-fid computes.

    Tr((S_a S_b)^1/2) is the sum of the square roots of the eigenvalues of S_a S_b, which are those
    of the symmetric PSD matrix S_a^1/2 S_b S_a^1/2: two symmetric eigendecompositions instead of
    pytorch-fid's general matrix square root (``scipy.linalg.sqrtm``, tens of seconds at 2048-d,
    and complex round-off on singular products). Tiny negative eigenvalues from round-off are 0.
    """
    mu1, mu2, s1, s2 = a.mean, b.mean, a.cov, b.cov
    diff = mu1 - mu2
    w, v = np.linalg.eigh(s1)
    root = v * np.sqrt(
        np.clip(w, 0, None)
    )  # S_a^1/2 = root @ v.T; root.T S_b root has its spectrum
    inner = np.linalg.eigvalsh(root.T @ s2 @ root)
    trace_covmean = float(np.sqrt(np.clip(inner, 0, None)).sum())
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * trace_covmean)
