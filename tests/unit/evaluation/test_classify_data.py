"""Label fractions, synthetic draws, and one clear error per bad input before any training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from suite.config import load_config
from suite.errors import ConfigError, DataError, SynmedError
from suite.evaluation.classify.config import ClassifyConfig, SyntheticConfig
from suite.evaluation.classify.data import label_fraction, synthetic_draw
from suite.evaluation.classify.run import run_classify
from suite.models.backbones import BackboneSpec, build_backbone, save_backbone


def test_label_fraction_is_stratified_seeded_and_keeps_every_class() -> None:
    labels = np.repeat(np.arange(4), [500, 200, 90, 10])
    ten = label_fraction(labels, 0.1, seed=0)
    np.testing.assert_array_equal(np.bincount(labels[ten]), [50, 20, 9, 1])
    one = label_fraction(labels, 0.01, seed=0)
    np.testing.assert_array_equal(np.bincount(labels[one]), [5, 2, 1, 1])  # at least one each
    np.testing.assert_array_equal(label_fraction(labels, 0.1, seed=0), ten)  # deterministic
    assert set(label_fraction(labels, 0.1, seed=1)) != set(ten)  # another seed, other rows
    assert len(np.unique(ten)) == len(ten)
    np.testing.assert_array_equal(label_fraction(labels, 1.0, seed=3), np.arange(len(labels)))


def test_label_fraction_of_multilabel_rows_keeps_rare_findings() -> None:
    rng = np.random.default_rng(0)
    y = np.zeros((1000, 3), np.float32)
    y[:600, 0] = 1
    y[600:650, 1] = 1
    y[:, 2] = rng.random(1000) < 0.2
    kept = y[label_fraction(y, 0.1, seed=0)]
    assert 55 <= len(kept) <= 105 and kept[:, 1].sum() == 5


def test_double_the_minority_class() -> None:
    names = ["covid", "normal", "pneumonia"]
    train = np.repeat([0, 1, 2], [30, 100, 12])
    pool = np.repeat([0, 1, 2], [50, 50, 40])
    picked = synthetic_draw(SyntheticConfig(mode="double"), pool, train, names, seed=0)
    np.testing.assert_array_equal(np.bincount(pool[picked], minlength=3), [0, 0, 12])
    chosen = SyntheticConfig(mode="double", classes=["covid", "pneumonia"])
    picked = synthetic_draw(chosen, pool, train, names, seed=0)
    np.testing.assert_array_equal(np.bincount(pool[picked], minlength=3), [30, 0, 12])
    per_class = SyntheticConfig(mode="per_class", per_class={"normal": 7})
    picked = synthetic_draw(per_class, pool, train, names, seed=1)
    np.testing.assert_array_equal(np.bincount(pool[picked], minlength=3), [0, 7, 0])
    ratio = synthetic_draw(SyntheticConfig(mode="ratio", ratio=0.5), pool, train, names, seed=2)
    assert len(ratio) == 71 and len(np.unique(ratio)) == 71
    with pytest.raises(DataError, match="asks for 60 synthetic images of 'covid'"):
        synthetic_draw(SyntheticConfig(mode="per_class", per_class={"covid": 60}), pool, train,
                       names, seed=0)  # fmt: skip


# -- bad input: one SynmedError each, before training, nothing written --------------------------


def _labelled(directory: Path, n: int, classes: tuple[str, ...], channels: int = 1) -> Path:
    """Real-format shards: row i has label i % K and split (i // K) % 3, so every split holds
    every class; images are seeded noise plus a class-dependent brightness."""
    from suite.data.writer import ShardSetWriter

    directory.mkdir(parents=True)
    attrs = {"class_names": list(classes), "label_kind": "multiclass", "source": "test"}
    writer = ShardSetWriter(directory, attrs)
    rng = np.random.default_rng(len(classes))
    for i in range(n):
        label = i % len(classes)
        image = rng.integers(0, 80, (channels, 16, 16)) + 40 * label
        writer.add({"images": image.astype(np.uint8), "index": i, "labels": label,
                    "split": (i // len(classes)) % 3})  # fmt: skip
    writer.close()
    return directory


def _unlabelled(directory: Path) -> Path:
    from suite.data.writer import ShardSetWriter

    directory.mkdir()
    writer = ShardSetWriter(directory, {"label_kind": "none", "source": "test"})
    for i in range(6):
        writer.add({"images": np.zeros((1, 16, 16), np.uint8), "index": i, "split": i % 3})
    writer.close()
    return directory


def _run(tmp_path: Path, *overrides: str) -> None:
    cfg = load_config(None, [f"run.out_dir={tmp_path / 'runs'}", *overrides], schema=ClassifyConfig)
    run_classify(cfg, tmp_path / "out", log=lambda m: None)


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        (["data.test_shards={abd}"], DataError, "test on a set with the same class list"),
        (["data.shards={none}"], DataError, "has no labels"),
        (["protocols=[linear_probe, svm_rbf]"], ConfigError, "is not allowed"),
        (["data.shards={tmp}/missing"], ConfigError, "does not exist"),
        (["backbone={{kind: export, path: {tmp}/nope}}"], ConfigError, "does not exist"),
        (["backbone={{kind: export, path: {grey_export}}}"], DataError, "adapt_channels"),
        (
            ["backbone={{kind: random, arch: resnet18, in_channels: 3}}"],
            DataError,
            "adapt_channels",
        ),
        (["backbone={{kind: imagenet, arch: resnet18}}"], DataError, "needs backbone.weights"),
        (["data.classes=[a, zzz]"], DataError, "are not among them"),
        (["data.label_fraction=0"], DataError, "outside (0, 1]"),
        (
            ["data.synthetic={{shards: {abd}, mode: double, classes: [c]}}"],
            DataError,
            "synthetic images of 'c'",
        ),  # fmt: skip
        (["seeds=[]"], ConfigError, "seeds"),
    ],
)
def test_bad_input_is_one_error_before_training(
    tmp_path: Path, overrides: list[str], error: type[SynmedError], message: str
) -> None:
    abc = _labelled(tmp_path / "abc", 30, ("a", "b", "c"))
    abd = _labelled(tmp_path / "abd", 30, ("a", "b", "d"))
    none = _unlabelled(tmp_path / "none")
    spec = BackboneSpec(arch="resnet18", image_size=16, in_channels=3, stem="cifar")
    grey_export = save_backbone(build_backbone(spec), spec, tmp_path / "export3")  # RGB net
    fill = {"abd": abd, "none": none, "tmp": tmp_path, "grey_export": grey_export}
    items = [f"data.shards={abc}"] + [o.format(**fill) for o in overrides]
    with pytest.raises(
        error, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
    ):
        _run(tmp_path, *items)
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.staging-*"))


def test_a_good_run_on_tiny_shards_writes_the_result_shape(tmp_path: Path) -> None:
    abc = _labelled(tmp_path / "abc", 60, ("a", "b", "c"))
    synth = _labelled(tmp_path / "syn", 40, ("c", "a"))  # another order: matched by name
    _run(tmp_path, f"data.shards={abc}", "backbone={kind: random, arch: resnet18, stem: cifar}",
         "protocols=[knn, linear_probe, logreg]", "seeds=[0, 1]", "linear_probe.epochs=3",
         "knn.k=3", f"data.synthetic={{shards: {synth}, mode: double, classes: [a]}}")  # fmt: skip
    import json

    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["task"] == "classify"
    assert set(result["metrics"]) >= {
        "knn.accuracy",
        "linear_probe.f1_macro",
        "logreg.auc_ovr_macro",
    }
    assert len(result["metrics"]["knn.accuracy"]["values"]) == 2
    ctx = result["context"]
    real_a = ctx["split_sizes"]["train"] // 3  # balanced: train holds 7 of each class
    assert ctx["synthetic"]["added_per_class"]["0"][0] == real_a  # "a" doubled
    assert ctx["split_sizes"]["train_synthetic"] == real_a
    assert set(result["per_class"]["knn"]) == {"a", "b", "c"}


@pytest.mark.parametrize("role", ["data.shards", "data.test_shards", "data.synthetic"])
def test_a_changed_shard_of_any_input_is_refused_naming_it(tmp_path: Path, role: str) -> None:
    abc = _labelled(tmp_path / "abc", 30, ("a", "b", "c"))
    changed = _labelled(tmp_path / "changed", 30, ("a", "b", "c"))
    shard = changed / "shard-00000.h5"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    items = {
        "data.shards": [f"data.shards={changed}"],
        "data.test_shards": [f"data.shards={abc}", f"data.test_shards={changed}"],
        "data.synthetic": [f"data.shards={abc}", f"data.synthetic={{shards: {changed}}}"],
    }[role]
    with pytest.raises(DataError, match="sha256 does not match") as err:
        _run(tmp_path, *items)
    assert str(shard) in err.value.what and role.split(".")[-1] in err.value.what
    assert not (tmp_path / "out").exists()
