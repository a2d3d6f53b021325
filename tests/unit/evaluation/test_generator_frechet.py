"""The Fréchet distance (Heusel et al. 2017) against pytorch-fid's formula, and FID's behaviour.

The reference below is pytorch-fid's ``calculate_frechet_distance`` (src/pytorch_fid/fid_score.py)
restated line for line: mean and ``np.cov`` of the features, ``scipy.linalg.sqrtm`` of the product
of covariances, the ``eps`` diagonal offset when that product is singular.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from scipy import linalg

from suite.data.demo import resolve_source
from suite.data.ingest.options import IngestOptions
from suite.data.ingest.pipeline import ingest
from suite.errors import DataError
from suite.evaluation.frechet import FeatureStats, frechet_distance
from tests.conftest import need


def calculate_frechet_distance(mu1, sigma1, mu2, sigma2, eps=1e-6) -> float:
    """pytorch-fid 0.3.0's implementation."""
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    diff = mu1 - mu2
    covmean, _ = linalg.sqrtm(sigma1.dot(sigma2), disp=False)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"Imaginary component {np.max(np.abs(covmean.imag))}")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def reference_fd(a: np.ndarray, b: np.ndarray) -> float:
    """pytorch-fid's path from features: np.mean and np.cov(rowvar=False), then the distance."""
    return calculate_frechet_distance(
        np.mean(a, axis=0), np.cov(a, rowvar=False), np.mean(b, axis=0), np.cov(b, rowvar=False)
    )


def correlated(rng: np.random.Generator, n: int, d: int, shift: float) -> np.ndarray:
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    return (rng.normal(size=(n, d)) @ mix + shift).astype(np.float32)


@pytest.mark.parametrize(("n", "d"), [(500, 16), (300, 64), (40, 64)])  # the last is singular
def test_matches_pytorch_fid_on_the_same_features(n: int, d: int) -> None:
    rng = np.random.default_rng(n + d)
    a, b = correlated(rng, n, d, 0.0), correlated(rng, n + 7, d, 0.3)
    ours = frechet_distance(FeatureStats.of(a), FeatureStats.of(b))
    ref = reference_fd(a, b)
    assert ref > 0.1
    assert ours == pytest.approx(ref, rel=1e-6)


def test_stats_merged_from_parts_give_the_same_distance() -> None:
    rng = np.random.default_rng(7)
    a, b = correlated(rng, 600, 32, 0.0), correlated(rng, 400, 32, 0.2)
    parts = [FeatureStats.of(p) for p in np.array_split(a, [1, 150, 151, 599])]
    merged = parts[0]
    for p in parts[1:]:
        merged = merged.merge(p)
    whole = FeatureStats.of(a)
    assert merged.n == whole.n
    np.testing.assert_allclose(merged.total, whole.total, rtol=1e-12)
    np.testing.assert_allclose(merged.outer, whole.outer, rtol=1e-12)
    np.testing.assert_allclose(merged.cov, np.cov(a, rowvar=False), rtol=1e-9, atol=1e-12)
    fb = FeatureStats.of(b)
    assert frechet_distance(merged, fb) == pytest.approx(reference_fd(a, b), rel=1e-6)


def test_a_set_against_itself_is_zero() -> None:
    a = correlated(np.random.default_rng(3), 800, 32, 1.0)
    stats = FeatureStats.of(a)
    scale = np.trace(stats.cov)  # the size of the terms that must cancel
    assert scale > 1
    assert abs(frechet_distance(stats, FeatureStats.of(a.copy()))) < 1e-6 * scale
    assert abs(reference_fd(a, a)) < 1e-6 * scale


@pytest.fixture(scope="module")
def mni_slices(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """Real MNI152 T1 axial slices (nilearn's template), 32 px uint8 (N, 1, 32, 32)."""
    try:
        path, demo = resolve_source("demo:mni152")
    except DataError as err:
        need(f"demo:mni152 is not installed ({err.fix})")
    out = tmp_path_factory.mktemp("mni") / "shards"
    options = IngestOptions(format="nifti", image_size=32, mask=demo["mask"],
                            mask_names=demo["mask_names"])  # fmt: skip
    ingest(path, out, options, progress=False)
    with h5py.File(next(out.glob("shard-*.h5"))) as h5:
        return h5["images"][:]


@pytest.mark.slow  # three 2048-d matrix square roots: ~15 s each alone, ~45 s on a busy 2 cores
def test_fid_rises_monotonically_with_gaussian_noise(mni_slices: np.ndarray) -> None:
    """FID (the standard Inception-v3 at 299 px) of noised slices against clean ones."""
    from suite.features.encoders import build_encoder

    # 2 shared cores; one forward pass of 16 images is ~4 s (tests/conftest.py restores the count)
    torch.set_num_threads(1)
    encoder = build_encoder("inception")
    # the reference and the scored sets are different slices (even / odd), as real and fake are;
    # 16 of each: half the forward passes of 32, and the same order with wide margins (measured:
    # 25.9 < 252.8 < 357.3; with 32, 14.4 < 213.6 < 303.4)
    real, fake = mni_slices[0::2][:16], mni_slices[1::2][:16]

    def features(images: np.ndarray) -> FeatureStats:
        return FeatureStats.of(encoder(torch.from_numpy(images)).numpy())

    real_stats = features(real)
    rng = np.random.default_rng(0)
    noise = rng.normal(size=fake.shape)
    fids = []
    for sigma in (0.0, 32.0, 96.0):  # in uint8 grey levels
        noisy = np.clip(fake + sigma * noise, 0, 255).round().astype(np.uint8)
        fids.append(frechet_distance(real_stats, features(noisy)))
    print(f"\nFID of noised MNI152 slices (sigma 0, 32, 96): {[round(f, 2) for f in fids]}")
    assert all(np.isfinite(fids))
    assert fids[0] < fids[1] < fids[2]
    assert fids[2] > 2 * fids[0]
