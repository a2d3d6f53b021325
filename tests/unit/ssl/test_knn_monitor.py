"""The pretraining kNN monitor scores with the evaluation's kNN classifier: same features, same
predictions (one classifier in the suite, with the overflow-safe weights)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from suite.evaluation.classify.data import label_fraction
from suite.evaluation.classify.knn import knn_scores
from suite.features.encoders import EncoderSpec, ImageEncoder
from suite.models.backbones import BackboneSpec, build_backbone
from suite.ssl.knn_monitor import KNNMonitor, knn_accuracy
from tests.unit.data.helpers import make_shard_set


@pytest.mark.parametrize("temperature", [0.01, 0.07, 1.0])
def test_monitor_and_evaluator_give_the_same_predictions(temperature: float) -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 8))
    train_labels = np.arange(60) % 3
    labels = np.arange(30) % 3
    train = centres[train_labels] + 0.8 * rng.normal(size=(60, 8))
    query = centres[labels] + 0.8 * rng.normal(size=(30, 8))
    scores = knn_scores(train, train_labels, query, num_classes=3, k=5, temperature=temperature)
    # T = 0.01 puts exp(1 / T) beyond float32: the shared classifier's shifted weights stay finite
    assert np.isfinite(scores).all()
    expected = float((scores.argmax(1) == labels).mean())
    got = knn_accuracy(
        torch.as_tensor(train, dtype=torch.float32),
        torch.as_tensor(train_labels),
        torch.as_tensor(query, dtype=torch.float32),
        torch.as_tensor(labels),
        num_classes=3,
        k=5,
        temperature=temperature,
    )
    assert got == expected and 0.0 < got <= 1.0


def test_monitor_accuracy_is_the_evaluators_knn_on_the_backbones_features(tmp_path: Path) -> None:
    shards = make_shard_set(tmp_path / "set", n=30, size=16)
    monitor = KNNMonitor(str(shards), "train", "val", k=3, temperature=0.07, max_images=100)
    spec = BackboneSpec(arch="resnet18", image_size=16, in_channels=1, stem="cifar")
    torch.manual_seed(0)
    net = build_backbone(spec).eval()
    got = monitor.accuracy(net, spec, torch.device("cpu"))

    encoder = ImageEncoder(
        net,
        EncoderSpec(
            spec="test",
            kind="ssl",
            dim=spec.dim,
            image_size=16,
            in_channels=1,
            mean=spec.mean,
            std=spec.std,
        ),
    )
    feats = {}
    for name, data in (("train", monitor.train), ("eval", monitor.eval)):
        rows = data.__getitems__(list(range(len(data))))
        images = torch.stack([r["image"] for r in rows])
        feats[name] = (encoder(images).numpy(), np.array([int(r["label"]) for r in rows]))
    scores = knn_scores(feats["train"][0], feats["train"][1], feats["eval"][0], num_classes=3, k=3)
    assert got == float((scores.argmax(1) == feats["eval"][1]).mean())


def test_a_label_fraction_keeps_the_evaluations_rows_as_memory(tmp_path: Path) -> None:
    shards = make_shard_set(tmp_path / "set", n=60, size=16)
    full = KNNMonitor(str(shards), "train", "val", k=3, temperature=0.07, max_images=100)
    part = KNNMonitor(
        str(shards), "train", "val", k=3, temperature=0.07, max_images=100, label_fraction=0.2
    )
    assert full.train.labels is not None
    # the rows eval_classify trains on at data.label_fraction 0.2, seed 0, every class kept
    expected = label_fraction(full.train.labels, 0.2, seed=0).tolist()
    assert part.positions["train"] == expected
    assert full.positions["train"] == list(range(len(full.train)))
    assert set(full.train.labels[expected]) == set(full.train.labels)
    assert part.positions["eval"] == full.positions["eval"]  # queries are unchanged
    # max_images still caps the memory, evenly over the kept rows
    capped = KNNMonitor(
        str(shards), "train", "val", k=3, temperature=0.07, max_images=3, label_fraction=0.2
    )
    assert capped.positions["train"] == expected[:: len(expected) // 3][:3]
