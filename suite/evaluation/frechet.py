"""The Fréchet distance between two Gaussians fitted to features (Heusel et al. 2017, FID).

Statistics are kept as count, sum and sum of outer products, so per-shard statistics computed on
different workers merge exactly before the distance is taken.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import linalg


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


def frechet_distance(a: FeatureStats, b: FeatureStats, eps: float = 1e-6) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2), as pytorch-fid computes it (with its
    diagonal offset when the product is singular)."""
    mu1, mu2, s1, s2 = a.mean, b.mean, a.cov, b.cov
    diff = mu1 - mu2
    covmean, _ = linalg.sqrtm(s1.dot(s2), disp=False)
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * eps
        covmean = linalg.sqrtm((s1 + offset).dot(s2 + offset))
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))
