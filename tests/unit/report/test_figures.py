"""Figures are real PNG files; a figure with nothing to show is not drawn."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from suite.data.writer import ShardSetWriter
from suite.report import figures
from suite.report.discover import discover
from tests.unit.data.helpers import make_shard_set, pattern
from tests.unit.report import helpers as h

PNG = b"\x89PNG\r\n\x1a\n"


def _png(path: Path) -> tuple[int, int]:
    assert path.read_bytes()[:8] == PNG
    with Image.open(path) as image:
        return image.size


def test_curves_confusion_and_bars(tmp_path: Path) -> None:
    h.training_run(tmp_path / "run" / "a", pretrain=True)
    h.training_run(tmp_path / "run" / "b", pretrain=False)
    result = h.classify_result(tmp_path / "run" / "c")
    found = discover(tmp_path / "run")
    runs = [(found.name(t.folder), t) for t in found.trainings]
    assert figures.curves(runs, "loss", "loss", "t", tmp_path / "loss.png")
    assert figures.curves(runs, "knn_accuracy", "acc", "t", tmp_path / "knn.png")
    assert not figures.curves(runs[1:], "knn_accuracy", "acc", "t", tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()
    assert figures.confusion_matrix(result["confusion"]["knn"], "knn", tmp_path / "cm.png")
    assert figures.per_class_bars(result["per_class"], "f1", "F1", tmp_path / "f1.png")
    for name in ("loss", "knn", "cm", "f1"):
        width, height = _png(tmp_path / f"{name}.png")
        assert width > 300 and height > 200
    multilabel = {"classes": ["a", "b"], "kind": "multilabel", "total": [[[1, 0], [0, 1]]] * 2}
    assert not figures.confusion_matrix(multilabel, "m", tmp_path / "m.png")


def test_knn_by_source_averages_the_seeds_of_each_source(tmp_path: Path) -> None:
    for name in ("s0", "s1"):
        h.training_run(tmp_path / "run" / name, pretrain=True)
    found = discover(tmp_path / "run")
    assert [figures.source_label(t) for t in found.trainings] == ["real:0.5,synthetic:0.5"] * 2
    assert figures.knn_by_source(found.trainings, "t", tmp_path / "by.png")
    width, height = _png(tmp_path / "by.png")
    assert width > 300 and height > 200
    # one run per source: nothing to average, no figure
    assert not figures.knn_by_source(found.trainings[:1], "t", tmp_path / "one.png")
    assert not (tmp_path / "one.png").exists()


def test_metric_vs_steps_needs_two_step_counts(tmp_path: Path) -> None:
    assert not figures.metric_vs_steps([("ddim", 20, 40.0)], "fid", "t", tmp_path / "one.png")
    points = [("ddim", 20, 40.0), ("ddim", 50, 30.0), ("ddpm", 1000, 25.0)]
    assert figures.metric_vs_steps(points, "fid", "t", tmp_path / "fid.png")
    _png(tmp_path / "fid.png")


def test_real_beside_synthetic_per_class_and_unlabelled(tmp_path: Path) -> None:
    real = make_shard_set(tmp_path / "real", n=12)
    fake = h.sampled_set(tmp_path / "fake")
    assert figures.sample_grid(real, fake, tmp_path / "grid.png", per_class=4)
    _png(tmp_path / "grid.png")
    unlabelled = tmp_path / "u"  # an unconditional generator's samples: no labels
    unlabelled.mkdir()
    writer = ShardSetWriter(unlabelled, {"source": "synthetic", "label_kind": "none"})
    for i in range(5):
        writer.add({"images": pattern(i), "index": i})
    writer.close()
    assert figures.sample_grid(real, unlabelled, tmp_path / "grid2.png")
    _png(tmp_path / "grid2.png")
