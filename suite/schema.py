"""The root schema of suite config files: ``synmed train generator``, ``pretrain``, ``data ingest``,
``submit`` and ``config show`` read it.

It sits above the config engine (:mod:`suite.config`, which imports no stage) and gathers each
stage's section: a stage adds its section dataclass in its own package and one field here.
Everything here is torch-free, so loading a config stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from suite import config as engine
from suite.config import MUST_EXIST, RegistryUnion, added_field
from suite.data.ingest.options import IngestOptions
from suite.generative.families import GENERATORS
from suite.ssl.config import PretrainConfig
from suite.train.config import TrainConfig

T = TypeVar("T")


@dataclass(kw_only=True, slots=True)
class RunConfig:
    """Where a run writes, and the seed every stage derives its own from."""

    name: str = "run"
    out_dir: Path = Path("runs")
    seed: int = 0


@dataclass(kw_only=True, slots=True)
class DataConfig(IngestOptions):
    """Input data: a raw source to ingest, or shards that already exist.

    ``source`` takes a path or ``demo:NAME`` (data shipped inside installed packages; see
    ``synmed data demo``).
    """

    source: str | None = None
    shards: Path | None = field(default=None, metadata={MUST_EXIST: True})
    # Which rows of ``shards`` a training stage reads.
    split: Literal["train", "val", "test"] | None = "train"
    classes: list[str] | None = None
    clusters: list[int] | None = None
    # a clustered set (synmed cluster): its representatives only (seed 004's per-cluster training
    # rows), and the cluster id as the class label (one generator conditioned on the cluster)
    representatives_only: bool = added_field(False)
    labels_from: Literal["class", "cluster"] = added_field("class")


@dataclass(kw_only=True, slots=True)
class SuiteConfig:
    """The root of every suite config file."""

    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    # model.kind names a generator family (suite/generative/families.py)
    model: Annotated[Any, RegistryUnion(GENERATORS)] | None = None
    pretrain: PretrainConfig | None = None
    train: TrainConfig = field(default_factory=TrainConfig)


def load_config(
    path: str | Path | None,
    overrides: list[str] | tuple[str, ...] = (),
    schema: type[T] = SuiteConfig,  # type: ignore[assignment]
) -> T:
    """:func:`suite.config.load_config` with :class:`SuiteConfig` as the default schema."""
    return engine.load_config(path, overrides, schema=schema)
