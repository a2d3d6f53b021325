"""`evaluate_generator` end to end on real shard sets and a real local Ray: result.json's shape,
per-class scores matched by class name, the reference-statistics cache, and bad inputs.

Real set: 30 rows, classes a/b/c. Fake set: 24 other images whose class list is in another order
(c, a, b), so per-class scores are right only if classes are matched by name, not by id.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import need_module

need_module("ray", "a dependency of synmed-suite: bash scripts/setup.sh")

from suite.data.shards import write_manifest  # noqa: E402
from suite.data.writer import ShardSetWriter  # noqa: E402
from suite.errors import ConfigError, DataError, ShardError  # noqa: E402
from suite.evaluation.frechet import FeatureStats, frechet_distance  # noqa: E402
from suite.evaluation.generator.job import GeneratorEvalOptions, evaluate_generator  # noqa: E402
from suite.evaluation.generator.stats import StatsRequest, compute_stats  # noqa: E402
from suite.features.encoders import resolve_encoder  # noqa: E402
from tests.unit.data.helpers import make_shard_set, pattern  # noqa: E402

pytestmark = [
    pytest.mark.ray,
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context"),
]
ENCODER = "random:32"
FAKE_CLASSES = ("c", "a", "b")
METRICS = {"fd_random_32", "kid_mean", "kid_std", "precision", "recall", "density", "coverage"}


def write_fake(directory: Path, n: int = 24, classes: tuple[str, ...] = FAKE_CLASSES) -> Path:
    """A sampled-looking set: no splits, labels in its own class order."""
    directory.mkdir(parents=True)
    attrs = {"source": "synthetic", "class_names": list(classes), "label_kind": "multiclass"}
    writer = ShardSetWriter(directory, attrs, shard_size=10)
    for i in range(n):
        writer.add({"images": pattern(1000 + i), "index": i, "labels": i % len(classes)})
    writer.close()
    return directory


@pytest.fixture(scope="module")
def sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gen-eval")
    return {
        "root": root,
        "real": make_shard_set(root / "real", n=30, shard_size=8),
        "fake": write_fake(root / "fake"),
        "cache": root / "cache",
    }


def options(cache: Path, **kw) -> GeneratorEvalOptions:
    base = {"encoders": (ENCODER,), "cache_dir": cache, "workers": 2, "kid_subsets": 10}
    return GeneratorEvalOptions(**{**base, **kw})


@pytest.fixture(scope="module")
def first(ray_local, sets: dict[str, Path]) -> dict:
    out = sets["root"] / "eval-1"
    result = evaluate_generator(sets["real"], sets["fake"], out, options(sets["cache"]))
    return {"out": out, "result": result}


def test_result_json_shape_and_csv(first: dict, sets: dict[str, Path]) -> None:
    out, result = first["out"], first["result"]
    assert sorted(p.name for p in out.iterdir()) == [".synmed-output", "metrics.csv", "result.json"]
    assert json.loads((out / "result.json").read_text()) == result
    assert result["task"] == "generator"
    metrics = result["metrics"]
    assert set(metrics) == METRICS  # no "fid": the Inception-v3 was not asked for
    assert all(isinstance(v, float) and math.isfinite(v) for v in metrics.values())
    assert metrics["fd_random_32"] > 0 and 0 <= metrics["precision"] <= 1
    ctx = result["context"]
    assert ctx["real"] == str(sets["real"].resolve()) and ctx["fake"] == str(sets["fake"].resolve())
    assert len(ctx["real_manifest_sha256"]) == 64 and len(ctx["fake_manifest_sha256"]) == 64
    assert ctx["encoders"] == [resolve_encoder(ENCODER).describe()]
    assert (ctx["n_real"], ctx["n_fake"], ctx["split"]) == (30, 24, None)
    assert ctx["kid"]["subset_size"] == 24 and ctx["prdc"] == {
        "pr_k": 3, "dc_k": 5, "n_real": 30, "n_fake": 24, "max_samples": 10_000, "seed": 0,
    }  # fmt: skip
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    table = {(r["scope"], r["metric"]): r["value"] for r in rows}
    for name, value in metrics.items():
        assert float(table[("all", name)]) == value
    assert float(table[("b", "fd_random_32")]) == result["per_class"]["b"]["fd_random_32"]
    assert not list(sets["root"].glob(".eval-1.staging-*"))


def test_per_class_scores_match_classes_by_name(first: dict, sets: dict[str, Path]) -> None:
    per_class = first["result"]["per_class"]
    assert list(per_class) == ["a", "b", "c"]  # the real set's order
    # the same features the job used (the encoder is deterministic), split by class here
    encoder = resolve_encoder(ENCODER)
    real, fake = compute_stats(
        [
            StatsRequest(sets["real"], sets["root"] / "s1"),
            StatsRequest(sets["fake"], sets["root"] / "s2"),
        ],
        encoder,
    )
    real_labels = np.arange(30) % 3  # make_shard_set: label i % 3 over (a, b, c)
    fake_labels = np.arange(24) % 3  # write_fake: label i % 3 over (c, a, b)
    for name, entry in per_class.items():
        r = real.sample[real_labels == "abc".index(name)]
        f = fake.sample[fake_labels == FAKE_CLASSES.index(name)]
        assert (entry["n_real"], entry["n_fake"]) == (10, 8)
        expected = frechet_distance(FeatureStats.of(r), FeatureStats.of(f))
        assert entry["fd_random_32"] == pytest.approx(expected, rel=1e-6)
    # matched by id instead, class "a" would be compared with the fake "c"
    wrong = frechet_distance(
        FeatureStats.of(real.sample[real_labels == 0]),
        FeatureStats.of(fake.sample[fake_labels == 0]),
    )
    assert per_class["a"]["fd_random_32"] != pytest.approx(wrong, rel=1e-3)


def test_cache_hit_miss_and_tampering(first: dict, sets: dict[str, Path]) -> None:
    cache, root = sets["cache"], sets["root"]
    (entry,) = first["result"]["context"]["cache"]["entries"]
    assert entry["hit"] is False and Path(entry["file"]).parent == cache
    assert sorted(p.suffix for p in cache.iterdir()) == [".json", ".npz"]

    again = evaluate_generator(sets["real"], sets["fake"], root / "eval-2", options(cache))
    (hit,) = again["context"]["cache"]["entries"]
    assert hit["hit"] is True and hit["digest"] == entry["digest"]
    for name, value in first["result"]["metrics"].items():
        assert again["metrics"][name] == pytest.approx(value, rel=1e-9, abs=1e-12), name

    # another split is another reference: a miss, and a second entry
    val = evaluate_generator(
        sets["real"], sets["fake"], root / "eval-3", options(cache, real_split="val")
    )
    assert val["context"]["cache"]["entries"][0]["hit"] is False and val["context"]["n_real"] == 10
    assert len(list(cache.glob("*.npz"))) == 2

    # one changed byte in the stored arrays: refused by the sha256 check, no output
    arrays = Path(entry["file"])
    data = bytearray(arrays.read_bytes())
    data[len(data) // 2] ^= 0xFF
    arrays.write_bytes(bytes(data))
    with pytest.raises(DataError, match="fails its sha256 check") as err:
        evaluate_generator(sets["real"], sets["fake"], root / "eval-4", options(cache))
    assert str(arrays) in err.value.fix
    assert not (root / "eval-4").exists() and not list(root.glob(".eval-4.staging-*"))

    # a sidecar rewritten for another key is refused too
    sidecar = arrays.with_suffix(".json")
    meta = json.loads(sidecar.read_text())
    meta["key"]["split"] = "test"
    sidecar.write_text(json.dumps(meta))
    with pytest.raises(DataError, match="written for another key"):
        evaluate_generator(sets["real"], sets["fake"], root / "eval-5", options(cache))

    # --no-cache: neither read nor written
    before = sorted(cache.iterdir())
    fresh = evaluate_generator(
        sets["real"], sets["fake"], root / "eval-6", options(cache, use_cache=False)
    )
    assert fresh["context"]["cache"]["entries"][0] == {**entry, "file": None}
    assert sorted(cache.iterdir()) == before


def test_default_cache_folder_follows_synmed_cache(monkeypatch, tmp_path: Path) -> None:
    from suite.evaluation.generator.stats import default_cache_dir

    monkeypatch.setenv("SYNMED_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path / "stats"
    monkeypatch.delenv("SYNMED_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "synmed" / "stats"


def bad(tmp_path: Path, real: Path, fake: Path, **kw) -> None:
    out = tmp_path / "out"
    evaluate_generator(real, fake, out, options(tmp_path / "cache", **kw))


@pytest.mark.parametrize(
    ("case", "error", "match"),
    [
        ("missing real", DataError, r"--real: shard set .*nope does not exist"),
        ("empty fake", DataError, r"--fake .* holds no images"),
        ("classes differ", DataError, r"class names differ: .*lacks \['c'\] and has \['x'\]"),
        ("unknown encoder", DataError, r"unknown encoder 'clip'"),
        ("split of a split-less set", DataError, r"has no splits"),
        ("too few images", DataError, r"holds 4 image\(s\); the metrics need at least 6"),
        ("no workers", ConfigError, r"--workers is 0"),
        (
            "sizes differ",
            DataError,
            r"--real .*real holds 16x16 images with 1 channel\(s\), --fake .*small 8x8",
        ),
        ("tampered real", DataError, r"--real: .*shard-00001\.h5: sha256 does not match"),
    ],
)
def test_bad_input_is_one_error_and_no_output(
    sets: dict[str, Path], tmp_path: Path, case: str, error: type, match: str
) -> None:
    real, fake, kw = sets["real"], sets["fake"], {}
    if case == "missing real":
        real = tmp_path / "nope"
    elif case == "empty fake":
        fake = tmp_path / "empty"
        fake.mkdir()
        write_manifest(fake, [], {"source": "synthetic", "label_kind": "none"})
    elif case == "classes differ":
        fake = write_fake(tmp_path / "other", classes=("a", "b", "x"))
    elif case == "unknown encoder":
        kw = {"encoders": ("clip",)}
    elif case == "split of a split-less set":
        real, kw = sets["fake"], {"real_split": "val"}
    elif case == "too few images":
        fake = write_fake(tmp_path / "tiny", n=4)
    elif case == "no workers":
        kw = {"workers": 0}
    elif case == "sizes differ":
        fake = make_shard_set(tmp_path / "small", n=24, size=8, source="synthetic")
    elif case == "tampered real":
        real = Path(shutil.copytree(real, tmp_path / "real"))
        data = bytearray((real / "shard-00001.h5").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (real / "shard-00001.h5").write_bytes(bytes(data))
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(error, match=match) as err:
        bad(tmp_path, real, fake, **kw)
    assert err.value.fix  # every error says how to fix it
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no output, no staging, no cache


def test_sets_of_different_shapes_are_refused_with_a_fix_that_works(
    sets: dict[str, Path], tmp_path: Path
) -> None:
    small = make_shard_set(tmp_path / "small", n=24, size=8, source="synthetic")
    with pytest.raises(
        DataError, match="FID and the other metrics compare images of one shape"
    ) as err:
        bad(tmp_path, sets["real"], small)
    assert str(sets["real"].resolve()) in err.value.what and str(small.resolve()) in err.value.what
    assert "--image-size 8 --channels 1" in err.value.fix  # the fake set's size, for re-ingest
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("flag", "value"), [("--workers", "0"), ("--workers", "-1"), ("--batch-size", "0")]
)
def test_counts_below_one_are_refused_by_the_cli_before_anything_starts(
    sets: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str
) -> None:
    from suite.cli import main

    out = tmp_path / "out"
    argv = ["evaluate", "generator", "--real", str(sets["real"]), "--fake", str(sets["fake"]),
            "--cache-dir", str(tmp_path / "cache"), flag, value, "--out", str(out)]  # fmt: skip
    assert main(argv) == 2
    assert f"error: {flag} is {value}, it must be at least 1" in capsys.readouterr().err
    assert sorted(tmp_path.iterdir()) == []  # neither --out nor the cache


def test_out_inside_an_input_set_is_refused(sets: dict[str, Path], tmp_path: Path) -> None:
    fake = Path(shutil.copytree(sets["fake"], tmp_path / "fake"))
    before = sorted(p.name for p in fake.iterdir())
    with pytest.raises(ShardError, match="lies inside the input"):
        evaluate_generator(sets["real"], fake, fake / "eval", options(tmp_path / "cache"))
    assert sorted(p.name for p in fake.iterdir()) == before


def test_metric_names_say_which_features_the_distance_is_on() -> None:
    from suite.evaluation.generator.job import metric_name, resolve_encoders

    names = [metric_name(e) for e in resolve_encoders(("inception", "inception:768", "random:32"))]
    assert names == ["fid", "fid_768", "fd_random_32"]
    with pytest.raises(ConfigError, match="'fid' twice"):
        resolve_encoders(("inception", "inception:2048"))


def test_a_result_without_the_768_d_fid_says_why() -> None:
    from suite.evaluation.generator.job import fid_768_note, resolve_encoders

    assert fid_768_note(resolve_encoders(("inception", "inception:768"))) is None
    assert "add --encoder inception:768" in fid_768_note(resolve_encoders(("inception",)))
    note = fid_768_note(resolve_encoders(("random:32",)))
    assert "only it offers the 768-d layer" in note and "--encoder inception" in note
