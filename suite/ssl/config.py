"""Typed config of `synmed pretrain` (torch-free: the `pretrain:` section of a suite config).

A method's config dataclass lives here, torch-free, with ``kind: Literal["<name>"]`` and
``implementation`` naming its method class; :data:`suite.ssl.registry.CONFIGS` lists it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal

from suite.config import (
    Fraction,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Range,
    RegistryUnion,
    added_field,
)
from suite.ssl.registry import CONFIGS


@dataclass(kw_only=True, slots=True)
class BackboneConfig:
    """The network being pretrained (see :mod:`suite.models.backbones` for the arch names).

    ``image_size`` is the global view size; ``in_channels`` None takes the data's channels.
    ``init`` starts from weights instead of random: ``ssl:PATH`` (an export of this stage) or
    ``imagenet:PATH`` (a torchvision ImageNet state_dict file on a local disk; seed 001's
    "ImageNet + real" rows). Nothing is ever downloaded.
    """

    arch: str = "resnet18"
    image_size: PositiveInt = 224
    in_channels: PositiveInt | None = None
    stem: Literal["imagenet", "cifar"] = "imagenet"
    patch_size: PositiveInt = 16
    num_layers: NonNegativeInt = (
        0  # ViT sizes: 0 takes the preset's (vit_tiny / vit_small / vit_base)
    )
    num_heads: NonNegativeInt = 0
    hidden_dim: NonNegativeInt = 0
    mlp_dim: NonNegativeInt = 0
    init: str | None = None


@dataclass(kw_only=True, slots=True)
class DINOConfig:
    """DINO (Caron et al., 2021, "Emerging Properties in Self-Supervised Vision Transformers").

    Defaults are the paper's ViT-S/16 recipe; seeds 000 and 001 differ (configs/papers/).
    """

    implementation: ClassVar[str] = "suite.ssl.dino:DINO"

    kind: Literal["dino"] = "dino"
    # projection head (lightly DINOProjectionHead)
    head_hidden_dim: PositiveInt = 2048
    head_bottleneck_dim: PositiveInt = 256
    head_output_dim: PositiveInt = 65536
    head_batch_norm: bool = False
    norm_last_layer: bool = True
    freeze_last_layer_epochs: NonNegativeInt = 1
    # loss (lightly DINOLoss); the teacher temperature warms up linearly over epochs
    warmup_teacher_temp: PositiveFloat = 0.04
    teacher_temp: PositiveFloat = 0.04
    warmup_teacher_temp_epochs: NonNegativeInt = 30
    student_temp: PositiveFloat = 0.1
    center_momentum: Fraction = 0.9
    # teacher EMA momentum, cosine from start to end over the run, per step
    momentum_start: Fraction = 0.996
    momentum_end: Fraction = 1.0
    # multi-crop views (lightly DINOTransform)
    global_crop_scale: tuple[Fraction, Fraction] = (0.4, 1.0)
    local_crop_size: PositiveInt = 96
    local_crop_scale: tuple[Fraction, Fraction] = (0.05, 0.4)
    n_local_views: NonNegativeInt = 6
    hflip_prob: Fraction = 0.5
    color_jitter_prob: Fraction = 0.8
    color_jitter_strength: NonNegativeFloat = 0.5
    gray_scale_prob: Fraction = 0.2
    blur_probs: tuple[Fraction, Fraction, Fraction] = (1.0, 0.1, 0.5)
    solarization_prob: Fraction = 0.2


@dataclass(kw_only=True, slots=True)
class SimCLRConfig:
    """SimCLR (Chen et al., 2020, "A Simple Framework for Contrastive Learning of Visual
    Representations"): two views, a projection MLP, NT-Xent over the global batch."""

    implementation: ClassVar[str] = "suite.ssl.simclr:SimCLR"

    kind: Literal["simclr"] = "simclr"
    head_hidden_dim: PositiveInt = 2048
    head_output_dim: PositiveInt = 128
    temperature: PositiveFloat = 0.5
    crop_min_scale: Fraction = 0.08
    hflip_prob: Fraction = 0.5
    color_jitter_prob: Fraction = 0.8
    color_jitter_strength: NonNegativeFloat = 1.0
    gray_scale_prob: Fraction = 0.2
    blur_prob: Fraction = 0.5


@dataclass(kw_only=True, slots=True)
class KNNMonitorConfig:
    """A weighted kNN classifier (Wu et al., 2018; DINO's eval_knn) on frozen features of a
    labelled shard set, every ``every_epochs`` epochs: the cheap signal that SSL is learning."""

    shards: str | None = None  # None: no monitor
    train_split: Literal["train", "val", "test"] = "train"
    eval_split: Literal["train", "val", "test"] = "val"
    every_epochs: PositiveInt = 1
    k: PositiveInt = 20
    temperature: PositiveFloat = 0.07
    max_images: PositiveInt = 5000  # per split: the monitor must stay cheap
    # the memory bank's share of the train split, stratified and seeded as eval_classify's
    # data.label_fraction (seed 0): at 1 % the monitor tracks the low-label kNN the recipes report,
    # which moves with pretraining where the all-labels kNN stays flat
    label_fraction: Annotated[float, Range(gt=0, le=1)] = added_field(1.0)


@dataclass(kw_only=True, slots=True)
class PretrainConfig:
    """`synmed pretrain`: what to pretrain, on what data, for how long.

    ``sources`` names shard sets; ``mix`` picks from them with proportions, so the seeds' grid is
    one override each: ``pretrain.mix=real``, ``pretrain.mix=synthetic``,
    ``pretrain.mix=real:0.5,synthetic:0.5``. An epoch is as many samples as the chosen sources
    hold together; each source fills its share (sampling with replacement when it is smaller).
    The learning rate is ``lr * global_batch / 256`` (the linear scaling rule of DINO and
    SimCLR) when ``scale_lr`` is set, warmed up linearly, then cosine down to ``min_lr``; the
    weight decay follows a cosine from ``weight_decay`` to ``weight_decay_end`` on every
    decayed parameter (not biases and norms).
    """

    # method.kind names an entry of suite/ssl/registry.py (DINOConfig, SimCLRConfig, ...)
    method: Annotated[Any, RegistryUnion(CONFIGS)] = field(default_factory=DINOConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    sources: dict[str, str] = field(default_factory=dict)
    mix: str = ""
    split: Literal["train", "val", "test"] | None = "train"
    epochs: PositiveInt = 100
    # Samples per epoch; None: the chosen sources' total size. Set it to compare sources of
    # different sizes (1,500 synthetic vs 9,000 real images) at the same number of steps.
    epoch_size: PositiveInt | None = added_field(None)
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: PositiveFloat = 5e-4
    scale_lr: bool = True
    min_lr: NonNegativeFloat = 1e-6
    warmup_epochs: NonNegativeInt = 10
    weight_decay: NonNegativeFloat = 0.04
    weight_decay_end: NonNegativeFloat = 0.4
    knn: KNNMonitorConfig = field(default_factory=KNNMonitorConfig)
