"""`synmed cluster` end to end on real images in a real local Ray: random and inception encoders.

Shard sets come from real data: MNI152 T1 slices (nilearn, 32 px, with masks, splits and groups)
and the first 32 Fashion-MNIST training images (Inception-v3 at 299 px runs ~3 images/s on 2 CPUs). The command runs through its argparse parser
(``add_cluster_parser``), as `synmed cluster` will, with the session's 2-CPU Ray.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.conftest import need, need_module

need_module("ray", "a dependency of synmed-suite: bash scripts/setup.sh")

from suite.artifacts.digests import sha256_file  # noqa: E402
from suite.data.dataset import ShardDataset  # noqa: E402
from suite.data.demo import resolve_source  # noqa: E402
from suite.data.ingest.options import IngestOptions  # noqa: E402
from suite.data.ingest.pipeline import ingest  # noqa: E402
from suite.data.shards import MANIFEST, read_manifest  # noqa: E402
from suite.data.verify import verify_shard_set  # noqa: E402
from suite.errors import DataError, ShardError  # noqa: E402
from suite.features.cli import (  # noqa: E402
    add_cluster_parser,
    cluster_command,
    format_summary,
    main,
)

pytestmark = [
    pytest.mark.ray,
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context"),
]
FASHION = Path("/usr/share/datasets/fashion-mnist")


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="synmed")
    add_cluster_parser(parser.add_subparsers(dest="group", required=True))
    return parser.parse_args(["cluster", *argv])


@pytest.fixture(scope="module")
def mni152(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        path, demo = resolve_source("demo:mni152")
    except DataError as err:
        need(f"demo:mni152 is not installed ({err.fix})")
    out = tmp_path_factory.mktemp("mni") / "shards"
    options = IngestOptions(
        format="nifti",
        image_size=32,
        mask=demo["mask"],
        mask_names=demo["mask_names"],
        shard_size=48,  # several shards: one Ray task each
    )
    ingest(path, out, options, progress=False)
    return out


@pytest.fixture(scope="module")
def fashion32(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not FASHION.is_dir():
        need("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist, Debian)")
    out = tmp_path_factory.mktemp("fashion") / "shards"
    ingest(FASHION, out, IngestOptions(format="idx", limit=32, shard_size=16), progress=False)
    return out


def check_clustered(source: Path, out: Path, k: int, dim: int, reps: int) -> dict:
    """Everything `synmed cluster` promises about its output folder."""
    report = verify_shard_set(out)
    before = read_manifest(source)
    after = read_manifest(out)
    n = before.count
    assert report.count == n and report.warnings == []
    assert [r.count for r in after.shards] == [r.count for r in before.shards]
    prov = after.attrs["clustering"]
    assert prov["k"] == k and prov["source_set"] == str(source.resolve())
    assert prov["source_manifest_sha256"] == sha256_file(source / MANIFEST)
    assert after.attrs["class_names"] == before.attrs["class_names"]

    labels, index = [], []
    for rec_in, rec_out in zip(before.shards, after.shards):
        with h5py.File(source / rec_in.file) as a, h5py.File(out / rec_out.file) as b:
            for key in a:  # every input column is carried over unchanged
                np.testing.assert_array_equal(a[key][:], b[key][:], err_msg=key)
            assert b["features"].shape == (rec_in.count, dim)
            assert b["features"].dtype == np.float32
            assert np.isfinite(b["features"][:]).all()
            labels.append(b["cluster"][:])
            index.append(b["index"][:])
    labels, index = np.concatenate(labels), np.concatenate(index)
    assert labels.dtype == np.int32 and set(labels.tolist()) <= set(range(k))

    clusters = json.loads((out / "clusters.json").read_text())
    sizes = [c["size"] for c in clusters["clusters"]]
    assert sum(sizes) == n and sizes == np.bincount(labels, minlength=k).tolist()
    cluster_of = dict(zip(index.tolist(), labels.tolist()))
    for c in clusters["clusters"]:
        assert len(c["representatives"]) == min(reps, c["size"])
        assert all(cluster_of[i] == c["id"] for i in c["representatives"])
        assert c["representative_cosine"] == sorted(c["representative_cosine"], reverse=True)

    selected = ShardDataset(out, clusters=[0], verify="none")
    np.testing.assert_array_equal(np.sort(selected.indices), np.sort(index[labels == 0]))
    assert len(selected) == sizes[0]

    for name in ("representatives.png", "embedding.png"):
        assert (out / name).stat().st_size > 2000, name
    summary = json.loads((out / "cluster_summary.json").read_text())
    assert summary["images"] == n and summary["cluster_sizes"] == sizes
    assert summary["extraction"]["images_per_s"] > 0
    assert not list(out.parent.glob(f".{out.name}.staging-*"))
    assert not (out / ".features-scratch").exists()
    return summary


def test_random_encoder_on_mni152(ray_local, mni152: Path, tmp_path: Path) -> None:
    out = tmp_path / "clustered"
    args = parse(
        "--shards", str(mni152), "--encoder", "random", "--k", "3", "--representatives", "6",
        "--workers", "2", "--batch-size", "32", "--out", str(out),
    )  # fmt: skip
    assert cluster_command(args) == 0
    summary = check_clustered(mni152, out, k=3, dim=512, reps=6)
    assert (out / "splits.json").is_file()
    # (not capsys: Ray Data's log handler would keep the test's stream past its closing)
    printed = format_summary(summary)
    assert "images/s" in printed and str(out / "clusters.json") in printed
    assert summary["extraction"]["workers"] == 2
    print(f"\nrandom: {summary['extraction']}")


def test_inception_encoder_on_fashion_mnist(ray_local, fashion32: Path, tmp_path: Path) -> None:
    out = tmp_path / "clustered"
    args = parse(
        "--shards", str(fashion32), "--encoder", "inception", "--k", "2",
        "--representatives", "4", "--embedding", "tsne", "--out", str(out),
    )  # fmt: skip
    assert cluster_command(args) == 0
    summary = check_clustered(fashion32, out, k=2, dim=2048, reps=4)
    assert summary["encoder"]["weights_sha256"]
    print(f"\ninception: {summary['extraction']}")


def test_missing_shards_is_one_clear_error_and_no_output(tmp_path: Path, capsys) -> None:
    out = tmp_path / "clustered"
    with pytest.raises(ShardError, match="does not exist"):
        cluster_command(
            parse("--shards", str(tmp_path / "nope"), "--encoder", "random", "--out", str(out))
        )
    # through the command's entry point: exit status 2, one message and its fix, no traceback
    argv = ["--shards", str(tmp_path / "nope"), "--encoder", "random", "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "does not exist" in err and "fix: " in err
    assert "Traceback" not in err and len(err.splitlines()) == 2
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no staging folder either


def test_bad_encoder_fails_before_any_output(mni152: Path, tmp_path: Path) -> None:
    out = tmp_path / "clustered"
    with pytest.raises(DataError, match="unknown encoder"):
        cluster_command(parse("--shards", str(mni152), "--encoder", "clip", "--out", str(out)))
    with pytest.raises(DataError, match="k = 1000"):
        cluster_command(
            parse("--shards", str(mni152), "--encoder", "random", "--k", "1000", "--out", str(out))
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_efficientnet_on_two_classes_keeps_the_tightest_cluster(
    ray_local, fashion32: Path, tmp_path: Path
) -> None:
    out = tmp_path / "clustered"
    args = parse(
        "--shards", str(fashion32), "--encoder", "efficientnet_lite0", "--k", "2",
        "--representatives", "3", "--classes", "Trouser,Bag", "--keep-top", "1",
        "--out", str(out),
    )  # fmt: skip
    assert cluster_command(args) == 0
    data = ShardDataset(fashion32, verify="none")
    chosen = np.isin(data.labels, [data.class_names.index(c) for c in ("Trouser", "Bag")])
    report = json.loads((out / "clusters.json").read_text())
    assert report["clustered"] == int(chosen.sum()) and report["images"] == len(data)
    cluster = np.concatenate(
        [h5py.File(out / r.file)["cluster"][:] for r in read_manifest(out).shards]
    )
    assert (cluster[~chosen] == -1).all() and set(cluster[chosen].tolist()) == {0, 1}
    # the higher pairwise cosine (a cluster of one image has none: it ranks last)
    means = [-1.0 if m is None else m for m in
             (c["representative_pairwise_mean"] for c in report["clusters"])]  # fmt: skip
    assert report["kept"] == [int(np.argmax(means))]
    assert [c["kept"] for c in report["clusters"]] == [c == report["kept"][0] for c in (0, 1)]
    assert report["encoder"]["dim"] == 1280
    reps = ShardDataset(out, representatives_only=True, verify="none")
    sizes = [c["size"] for c in report["clusters"]]
    assert len(reps) == sum(min(3, n) for n in sizes) and set(reps.indices) <= set(
        data.indices[chosen]
    )
