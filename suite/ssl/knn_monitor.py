"""kNN accuracy on frozen features during pretraining: SSL's cheap progress signal.

The classifier is the evaluation's own (:func:`suite.evaluation.classify.knn.knn_scores`: votes
weighted by ``exp(cosine / T)`` over the k nearest training features, Wu et al., 2018; DINO's
eval_knn uses k=20, T=0.07), so the number logged while training is the number ``synmed evaluate
classify`` reports for the same features.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from suite.data.dataset import ShardDataset
from suite.errors import DataError
from suite.evaluation.classify.data import label_fraction
from suite.evaluation.classify.knn import knn_scores
from suite.features.encoders import EncoderSpec, ImageEncoder
from suite.models.backbones import BackboneSpec


@dataclass
class KNNMonitor:
    """kNN top-1 accuracy of a backbone on a labelled shard set (train split as memory, another
    split as queries), at most ``max_images`` of each; the memory is a stratified
    ``label_fraction`` of the train split, the rows ``synmed evaluate classify`` trains on at that
    fraction with seed 0."""

    shards: str
    train_split: str
    eval_split: str
    k: int
    temperature: float
    max_images: int
    label_fraction: float = 1.0

    def __post_init__(self) -> None:
        self.train = ShardDataset(self.shards, split=self.train_split)  # type: ignore[arg-type]
        self.eval = ShardDataset(self.shards, split=self.eval_split)  # type: ignore[arg-type]
        if self.train.label_kind != "multiclass":
            raise DataError(
                f"pretrain.knn.shards={self.shards} has no class labels ({self.train.label_kind})",
                "point the kNN monitor at a labelled shard set, or unset pretrain.knn.shards",
            )
        if len(self.train) == 0 or len(self.eval) == 0:
            raise DataError(
                f"pretrain.knn.shards={self.shards} has no images in split "
                f"{self.train_split!r} or {self.eval_split!r}",
                "choose pretrain.knn.train_split / eval_split that exist (synmed data info)",
            )
        self.num_classes = len(self.train.class_names)
        memory = np.arange(len(self.train))
        if self.label_fraction < 1.0:
            assert self.train.labels is not None  # multiclass, checked above
            memory = label_fraction(self.train.labels, self.label_fraction, seed=0)
        self.positions = {
            "train": self._spread(memory, self.max_images),
            "eval": self._spread(np.arange(len(self.eval)), self.max_images),
        }

    @staticmethod
    def _spread(positions: np.ndarray, limit: int) -> list[int]:
        # evenly spaced rows: deterministic and covering the whole set
        step = max(1, len(positions) // limit)
        return [int(p) for p in positions[::step][:limit]]

    @staticmethod
    def _rows(data: ShardDataset, picks: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        samples = data.__getitems__(picks)
        images = torch.stack([s["image"] for s in samples])
        labels = torch.tensor([int(s["label"]) for s in samples])
        return images, labels

    @torch.no_grad()
    def accuracy(self, backbone: nn.Module, spec: BackboneSpec, device: torch.device) -> float:
        encoder = ImageEncoder(
            backbone,
            EncoderSpec(
                spec="knn-monitor",
                kind="ssl",
                dim=spec.dim,
                image_size=spec.image_size,
                in_channels=spec.in_channels,
                mean=spec.mean,
                std=spec.std,
                arch=spec.arch,
            ),
        ).to(device)
        was_training = backbone.training
        backbone.eval()
        try:
            features = {}
            for name, data in (("train", self.train), ("eval", self.eval)):
                images, labels = self._rows(data, self.positions[name])
                feats = torch.cat([encoder(chunk.to(device)).cpu() for chunk in images.split(256)])
                features[name] = (feats, labels)
        finally:
            backbone.train(was_training)
        return knn_accuracy(
            features["train"][0],
            features["train"][1],
            features["eval"][0],
            features["eval"][1],
            num_classes=self.num_classes,
            k=self.k,
            temperature=self.temperature,
        )


def knn_accuracy(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    features: torch.Tensor,
    labels: torch.Tensor,
    *,
    num_classes: int,
    k: int,
    temperature: float,
) -> float:
    """Top-1 accuracy of the evaluation's kNN classifier on ``features`` (arg-max of its votes)."""
    scores = knn_scores(
        train_features.numpy(),
        train_labels.numpy(),
        features.numpy(),
        num_classes=num_classes,
        k=k,
        temperature=temperature,
    )
    return float((scores.argmax(1) == labels.numpy()).mean())
