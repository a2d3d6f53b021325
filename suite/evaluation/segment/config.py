"""The ``synmed evaluate segment`` config: typed sections loaded with :func:`suite.config.load_config`.

Defaults follow DiffBoost's segmentation recipe (Zhang et al., IEEE TMI 2024; seed 002 in
docs/papers.md): MONAI's ``DiceCELoss(include_background=False)``, AdamW at a constant 1e-3,
batch 8, merging masks with ``alpha`` 0.6 on 64 px patches (at 384 px; scale ``merge_patch`` with
the image size). Unlike the seed, the epoch kept is chosen on the validation split and the report is
computed on a split the selection never saw.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from suite.config import (
    MUST_EXIST,
    Fraction,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Range,
    added_field,
    load_config,
)
from suite.errors import ConfigError
from suite.schema import RunConfig

TrainingData = Literal["real", "mixed", "merging"]
# seed 002's baseline augmentations, as MONAI transforms (suite/evaluation/segment/augment.py)
AugmentName = Literal[
    "contrast", "gamma", "brightness", "noise", "blur", "mirror", "rotate", "scale"
]


@dataclass(kw_only=True, slots=True)
class SegmentDataConfig:
    """The image+mask shard sets.

    ``shards`` gives the train, val and report splits. ``synthetic`` (image+mask pairs, e.g. a
    mask-conditioned generator's output) is used by ``train.training_data`` "mixed" and "merging".
    """

    shards: Path | None = field(default=None, metadata={MUST_EXIST: True})
    synthetic: Path | None = field(default=None, metadata={MUST_EXIST: True})
    # Rows of ``synthetic`` to train on: None takes all (a sampled set has no splits); a split name
    # keeps e.g. the train rows of a set derived from real data, so val/test never leak in.
    synthetic_split: Literal["train", "val", "test"] | None = None
    # The split reported on. Model selection always uses "val"; reporting on "val" is allowed but
    # recorded as selection-biased in result.json.
    eval_split: Literal["val", "test"] = "test"
    # What one case is: each image, or each group (volume/patient) of slices stacked in index order.
    cases: Literal["image", "group"] = "image"
    # K-fold cross-validation by group (seed 002: 3 folds by case): K > 1 re-splits every row of
    # ``shards`` by its group column (suite/data/folds.py, as `synmed data folds`) and runs every
    # fold; 1 keeps the set's own splits. ``fold_val_fraction`` of each fold's non-test groups (at
    # least one) select the model; ``fold_shuffle_seed`` shuffles the groups before KFold.
    folds: PositiveInt = added_field(1)
    fold_val_fraction: Annotated[float, Range(gt=0, lt=1)] = added_field(0.2)
    fold_shuffle_seed: int | None = added_field(None)
    # one synthetic set per fold (each fold's own generator output), in place of ``synthetic``
    synthetic_folds: list[Path] | None = added_field(None, must_exist=True)


@dataclass(kw_only=True, slots=True)
class SegmentModelConfig:
    """The network: the suite's conv U-Net, a U-Net whose encoder is a torchvision ResNet, or
    MONAI's UNet or AttentionUnet (seed 002's network)."""

    encoder: Literal["conv", "resnet", "monai_unet", "monai_attention_unet"] = "conv"
    # conv and MONAI networks: widths per level (each level halves the resolution; the MONAI ones
    # need H and W divisible by 2 ** (levels - 1))
    channels: list[PositiveInt] = field(default_factory=lambda: [16, 32, 64, 128])
    # resnet encoder built from scratch (ignored when ``backbone`` is set: its spec decides)
    arch: str = "resnet18"
    stem: Literal["imagenet", "cifar"] = "cifar"
    # an SSL export (backbone.safetensors + synmed-export.json) to initialise the ResNet encoder
    backbone: Path | None = field(default=None, metadata={MUST_EXIST: True})
    freeze_encoder: bool = False
    # decoder widths, deepest first (resnet encoder; the conv U-Net mirrors ``channels``)
    decoder_channels: list[PositiveInt] = field(default_factory=lambda: [128, 64, 32, 16, 16])


@dataclass(kw_only=True, slots=True)
class SegmentTrainConfig:
    """Optimisation, training data and seeds."""

    training_data: TrainingData = "real"
    # "mixed": synthetic images added per real training image (1.0 doubles the training set)
    synthetic_ratio: PositiveFloat = 1.0
    # "merging": probability that a patch keeps the real image's prediction and label (DiffBoost
    # `random_select = rand < alpha` selects the real branch), and the patch side in pixels
    alpha: Fraction = 0.6
    merge_patch: PositiveInt = 64
    epochs: PositiveInt = 100
    batch_size: PositiveInt = 8
    lr: PositiveFloat = 1e-3
    weight_decay: NonNegativeFloat = 1e-2  # torch's AdamW default, which DiffBoost uses
    lambda_dice: NonNegativeFloat = 1.0
    lambda_ce: NonNegativeFloat = 1.0
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    threads: PositiveInt | None = None  # torch intra-op threads; None leaves torch's default
    # training-set augmentations (real and mixed-in synthetic rows; not merging partners), each
    # applied with probability augment_prob, seeded per (seed, epoch, row)
    augment: tuple[AugmentName, ...] = added_field(())
    augment_prob: Fraction = added_field(0.5)
    # "merging": the partner of a real row is one of its own synthetic versions (seed 002; the
    # synthetic set's ``source_index`` names the real row), or any synthetic row
    partner: Literal["own", "any"] = added_field("own")
    # None trains on whole images; a size trains on one seeded random crop per row and epoch and
    # predicts with MONAI's sliding-window inference (seed 002: 384 px windows, overlap 0.5)
    patch_size: PositiveInt | None = added_field(None)
    window_overlap: Annotated[float, Range(ge=0, lt=1)] = added_field(0.5)


@dataclass(kw_only=True, slots=True)
class SegmentReportConfig:
    """What goes into the PNG."""

    figure_cases: NonNegativeInt = 4


@dataclass(kw_only=True, slots=True)
class SegmentEvalConfig:
    """Root of ``configs/evaluate/segment_*.yaml``."""

    run: RunConfig = field(default_factory=lambda: RunConfig(name="segment"))
    data: SegmentDataConfig = field(default_factory=SegmentDataConfig)
    model: SegmentModelConfig = field(default_factory=SegmentModelConfig)
    train: SegmentTrainConfig = field(default_factory=SegmentTrainConfig)
    report: SegmentReportConfig = field(default_factory=SegmentReportConfig)


def load_segment_config(
    path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()
) -> SegmentEvalConfig:
    """Load and check a segmentation config (types by the schema, then the cross-field rules)."""
    cfg = load_config(path, overrides, schema=SegmentEvalConfig)
    check_config(cfg)
    return cfg


def check_config(cfg: SegmentEvalConfig) -> None:
    """Rules the types cannot express; each failure is one ConfigError naming key and fix."""
    data, train, model = cfg.data, cfg.train, cfg.model
    if data.shards is None:
        raise ConfigError(
            "data.shards is not set", "pass data.shards=PATH (an image+mask shard set)"
        )
    needs_synthetic = train.training_data in ("mixed", "merging")
    has_synthetic = data.synthetic is not None or data.synthetic_folds is not None
    if needs_synthetic and not has_synthetic:
        raise ConfigError(
            f"train.training_data={train.training_data} needs data.synthetic",
            "set data.synthetic=PATH (an image+mask shard set), or train.training_data=real",
        )
    if not needs_synthetic and has_synthetic:
        key = "data.synthetic" if data.synthetic is not None else "data.synthetic_folds"
        raise ConfigError(
            f"{key} is set but train.training_data=real would ignore it",
            f"set train.training_data=mixed or merging, or drop {key}",
        )
    _check_folds(data)
    _check_patches(cfg)
    if not train.seeds or len(set(train.seeds)) != len(train.seeds):
        raise ConfigError(
            f"train.seeds={train.seeds} must be a non-empty list of distinct seeds",
            "e.g. [0, 1, 2]",
        )
    if model.encoder != "resnet" and (not model.channels or min(model.channels) < 1):
        raise ConfigError(
            f"model.channels={model.channels} needs positive widths", "e.g. [16, 32, 64, 128]"
        )
    if model.encoder.startswith("monai") and len(model.channels) < 2:
        raise ConfigError(
            f"model.encoder={model.encoder} needs at least 2 levels, model.channels="
            f"{model.channels} has {len(model.channels)}",
            "give 2 or more widths, e.g. model.channels=[16, 32, 64, 128]",
        )
    if model.encoder == "resnet" and (len(model.decoder_channels) != 5):
        raise ConfigError(
            f"model.decoder_channels has {len(model.decoder_channels)} widths; the ResNet U-Net "
            "has 5 decoder stages (layer3, layer2, layer1, stem, input)",
            "give 5 widths, e.g. [128, 64, 32, 16, 16]",
        )
    if model.backbone is not None and model.encoder != "resnet":
        raise ConfigError(
            f"model.backbone is set but model.encoder={model.encoder}", "set model.encoder=resnet"
        )
    if model.freeze_encoder and model.encoder != "resnet":
        raise ConfigError(
            f"model.freeze_encoder=true needs a pretrained encoder, model.encoder={model.encoder}",
            "set model.encoder=resnet with model.backbone=EXPORT, or model.freeze_encoder=false",
        )
    if train.lambda_dice == 0 and train.lambda_ce == 0:
        raise ConfigError(
            "train.lambda_dice and train.lambda_ce are both 0: the loss would be 0",
            "set train.lambda_dice=1 train.lambda_ce=1 (DiffBoost's weights)",
        )
    if len(set(train.augment)) != len(train.augment):
        raise ConfigError(
            f"train.augment={list(train.augment)} names an augmentation twice",
            f"list each once, e.g. train.augment={sorted(set(train.augment))}",
        )
    if cfg.report.figure_cases < 0:
        raise ConfigError("report.figure_cases must be >= 0", "e.g. 4")


def _check_folds(data: SegmentDataConfig) -> None:
    if data.folds > 1 and data.eval_split != "test":
        raise ConfigError(
            f"data.eval_split={data.eval_split} with data.folds={data.folds}: each fold "
            "reports on its test groups and selects on its val groups",
            "set data.eval_split=test, or data.folds=1",
        )
    if data.synthetic_folds is None:
        return
    if data.synthetic is not None:
        raise ConfigError(
            "data.synthetic and data.synthetic_folds are both set",
            "set data.synthetic (one set for every fold) or data.synthetic_folds (one per fold)",
        )
    if data.folds == 1:
        raise ConfigError(
            "data.synthetic_folds is set but data.folds=1 (no cross-validation)",
            f"set data.folds={len(data.synthetic_folds)}, or data.synthetic=PATH instead",
        )
    if len(data.synthetic_folds) != data.folds:
        raise ConfigError(
            f"data.synthetic_folds lists {len(data.synthetic_folds)} set(s) for data.folds="
            f"{data.folds}",
            f"give one synthetic set per fold ({data.folds} paths, fold 0 first)",
        )


def _check_patches(cfg: SegmentEvalConfig) -> None:
    patch, model = cfg.train.patch_size, cfg.model
    if patch is None or not model.encoder.startswith("monai"):
        return
    factor = 2 ** (len(model.channels) - 1)
    if patch % factor:
        fit = max(factor, patch // factor * factor)
        raise ConfigError(
            f"train.patch_size={patch} is not divisible by {factor}, which model.encoder="
            f"{model.encoder} with model.channels={model.channels} ({len(model.channels)} levels) "
            "needs",
            f"set train.patch_size={fit} (a multiple of {factor}), or use fewer levels",
        )
