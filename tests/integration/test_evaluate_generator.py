"""`synmed evaluate generator` through the CLI, as a user runs it: a fresh process (joining the
session's local Ray on 127.0.0.1), real MNI152 slices (16 px) as the reference and a noised copy as
the "generator".
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import h5py
import numpy as np
import pytest

from suite.data.shards import read_manifest
from suite.data.writer import ShardSetWriter
from tests.integration.helpers import synmed, synmed_here

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.usefixtures("joined_ray")]


def noised_copy(real: Path, out: Path, sigma: float, every: int = 9) -> Path:
    """Every ``every``-th slice of ``real`` with Gaussian noise, as shards of 8 (several tasks)."""
    out.mkdir(parents=True)
    writer = ShardSetWriter(out, {"source": "synthetic", "label_kind": "none"}, shard_size=8)
    rng = np.random.default_rng(0)
    with h5py.File(real / read_manifest(real).shards[0].file) as h5:
        images = h5["images"][::every]
    for i, image in enumerate(images):
        noisy = np.clip(image + rng.normal(0, sigma, image.shape), 0, 255).round()
        writer.add({"images": noisy.astype(np.uint8), "index": i})
    writer.close()
    return out


def test_evaluate_generator_cli(
    mni16: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the test split and every 9th slice: the Inception-v3 at 299 px runs a few images/s on 2 cores
    fake = noised_copy(mni16, tmp_path / "fake", sigma=24.0)
    out, cache = tmp_path / "eval", tmp_path / "cache"
    proc = synmed(
        "evaluate", "generator", "--real", str(mni16), "--fake", str(fake),
        "--encoder", "inception", "--encoder", "random:32", "--real-split", "test",
        "--workers", "2", "--kid-subsets", "20", "--cache-dir", str(cache), "--out", str(out),
        timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    metrics = result["metrics"]
    assert set(metrics) == {
        "fid", "fd_random_32", "kid_mean", "kid_std", "precision", "recall", "density", "coverage",
    }  # fmt: skip
    assert all(math.isfinite(v) for v in metrics.values())
    assert metrics["fid"] > 1 and metrics["kid_mean"] > 0  # noise is visible to the Inception-v3
    ctx = result["context"]
    assert (ctx["n_real"], ctx["n_fake"], ctx["split"]) == (14, 15, "test")  # of 133 slices
    assert [e["spec"] for e in ctx["encoders"]] == ["inception", "random:32"]
    assert ctx["encoders"][0]["weights_sha256"] and ctx["sample_metrics_encoder"] == "inception"
    assert result["per_class"] == {} and "unlabelled" in ctx["per_class_note"]
    assert [e["hit"] for e in ctx["cache"]["entries"]] == [False, False]
    assert len(list(cache.glob("*.npz"))) == 2
    with open(out / "metrics.csv") as f:
        assert {r["metric"] for r in csv.DictReader(f)} == set(metrics)
    assert f"fid           {metrics['fid']:.6g}" in proc.stdout
    print(f"\n{proc.stdout}")

    # a bad input: exit status 2, the error and its fix, no traceback, no output (in this process:
    # a fresh interpreter's imports would be most of the command's time)
    bad = synmed_here(capsys, "evaluate", "generator", "--real", str(mni16), "--fake",
                      str(tmp_path / "nope"), "--out", str(tmp_path / "bad"))  # fmt: skip
    assert bad.returncode == 2
    lines = bad.stderr.strip().splitlines()
    assert lines[0].startswith("error: --fake: shard set") and lines[1].startswith("  fix: ")
    assert "Traceback" not in bad.stderr and not (tmp_path / "bad").exists()
