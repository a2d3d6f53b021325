"""Find and read every stage output below a folder: evaluation results, training runs, sampling
and cluster outputs, shard sets. Nothing here computes or writes; the other report modules do.

What marks each kind (the files the stage writers leave):

- evaluation result: ``result.json`` of the result schema (:mod:`suite.artifacts.results`; task
  classify, self_validate, self_validate_sweep, segment or generator), read and version-checked by
  its reader; a ``result.json`` of an older layout (a ``"task"`` but no schema) is an error naming
  the file, one of another tool is ignored. A result inside another result's folder (``seeds/seedN/`` below a
  merged result) is part of that one and is not listed again;
- training run: ``summary.json`` plus ``metrics.jsonl`` (generator training, ``synmed pretrain``);
- sampling output: ``sample_summary.json`` (or a ``summary.json`` with ``sampler``), ``samples.png``;
- cluster output: ``cluster_summary.json`` or ``clusters.json``, ``embedding.png``;
- shard set: ``manifest.json``; ``attrs.source`` says real or synthetic.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from suite.artifacts.results import (
    EVALUATORS,
    RESULT_FILE,
    RESULT_SCHEMA,
    InputRef,
    Result,
    read_json,
)
from suite.data.shards import MANIFEST, read_manifest
from suite.errors import DataError, SynmedError

RESULT = RESULT_FILE
SUMMARY = "summary.json"
METRICS = "metrics.jsonl"
SAMPLE_SUMMARY = "sample_summary.json"
SAMPLES_PNG = "samples.png"
CLUSTER_SUMMARY = "cluster_summary.json"
CLUSTERS = "clusters.json"
EMBEDDING_PNG = "embedding.png"
CONFIG_YAML = "config.yaml"  # what the training loop saves beside summary.json


@dataclass(slots=True)
class EvalResult:
    """One evaluation ``result.json`` found in ``folder``, as its reader checked it."""

    folder: Path
    result: Result

    @property
    def task(self) -> str:
        return self.result.task

    @property
    def metrics(self) -> dict[str, Any]:
        return self.result.metrics

    @property
    def per_class(self) -> dict[str, Any]:
        return self.result.per_class

    @property
    def context(self) -> dict[str, Any]:
        return self.result.context

    @property
    def settings(self) -> dict[str, Any]:
        return self.result.settings

    @property
    def inputs(self) -> dict[str, InputRef]:
        return self.result.inputs

    @property
    def raw(self) -> dict[str, Any]:
        """The whole object as the file holds it (evaluator-specific keys included)."""
        return self.result.to_json()


@dataclass(slots=True)
class TrainingRun:
    """A training run: its summary and its metrics log, one record per logged step."""

    folder: Path
    summary: dict[str, Any]
    records: list[dict[str, Any]]
    config: dict[str, Any] = field(default_factory=dict)  # the resolved config.yaml, if kept

    @property
    def seed(self) -> int | None:
        run = self.config.get("run")
        return run.get("seed") if isinstance(run, dict) else None

    @property
    def kind(self) -> str:
        """``generator`` (a model kind in the summary) or ``pretrain`` (an SSL method)."""
        return "pretrain" if "method" in self.summary else "generator"


@dataclass(slots=True)
class SamplingRun:
    folder: Path
    summary: dict[str, Any]
    grid: Path | None


@dataclass(slots=True)
class ClusterRun:
    folder: Path
    summary: dict[str, Any]
    embedding: Path | None


@dataclass(slots=True)
class ShardSetRef:
    """A shard set seen from its manifest alone (no shard is opened here)."""

    folder: Path
    source: str
    count: int
    attrs: dict[str, Any]
    clustered: bool  # a cluster output: the input rows again, not a set of its own


@dataclass(slots=True)
class Found:
    """Everything found below a run folder, each list in path order."""

    root: Path
    results: list[EvalResult] = field(default_factory=list)
    trainings: list[TrainingRun] = field(default_factory=list)
    samplings: list[SamplingRun] = field(default_factory=list)
    clusters: list[ClusterRun] = field(default_factory=list)
    shard_sets: list[ShardSetRef] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # what was seen but cannot be reported

    def by_task(self, *tasks: str) -> list[EvalResult]:
        return [r for r in self.results if r.task in tasks]

    def name(self, folder: Path) -> str:
        """A folder's name in the report: its path below the run folder."""
        rel = os.path.relpath(folder, self.root)
        return self.root.resolve().name if rel == "." else rel


def read_metrics_log(path: Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl``. A torn last line (a run killed while appending) is
    dropped; a bad line before it means the file was edited or damaged and is an error."""
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    records = []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except ValueError:
            if number == len(lines):
                break
            raise DataError(
                f"{path} line {number} is not JSON",
                "re-run the training (with --resume it rewrites the log), or remove the line",
            ) from None
        if isinstance(record, dict):
            records.append(record)
    return records


def _read_config(path: Path) -> dict[str, Any]:
    """A run's saved config, only for its seed: a missing or unreadable one just leaves it out."""
    import yaml

    try:
        body = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    return body if isinstance(body, dict) else {}


def _is_result(body: dict[str, Any]) -> bool:
    """A synmed evaluation result: of the schema, or of the layout before it (a task, no schema),
    which the reader refuses with the fix; another tool's ``result.json`` is not one."""
    return body.get("schema") == RESULT_SCHEMA or ("schema" not in body and "task" in body)


def _inside(folder: Path, others: list[Path]) -> bool:
    return any(folder != o and folder.is_relative_to(o) for o in others)


def discover(root: Path, *, exclude: tuple[Path, ...] = ()) -> Found:
    """Walk ``root`` (hidden folders, e.g. staging folders, and ``exclude`` are skipped)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(
            f"run folder {root} does not exist or is not a folder",
            "pass a folder holding stage outputs (a synmed run folder, an evaluation --out ...)",
        )
    skip = {p.resolve() for p in exclude}
    found = Found(root=root)
    results: list[EvalResult] = []
    for dirpath, dirnames, filenames in os.walk(root):
        folder = Path(dirpath)
        dirnames[:] = sorted(
            d for d in dirnames if not d.startswith(".") and (folder / d).resolve() not in skip
        )
        files = set(filenames)
        if RESULT in files:
            body = read_json(folder / RESULT)
            if _is_result(body):
                results.append(
                    EvalResult(folder, Result.from_json(body, source=str(folder / RESULT)))
                )
        if SUMMARY in files and METRICS in files:
            found.trainings.append(
                TrainingRun(
                    folder,
                    read_json(folder / SUMMARY),
                    read_metrics_log(folder / METRICS),
                    _read_config(folder / CONFIG_YAML),
                )
            )
        sampling = _sampling_summary(folder, files)
        if sampling is not None:
            grid = folder / SAMPLES_PNG
            found.samplings.append(SamplingRun(folder, sampling, grid if grid.is_file() else None))
        clustered = CLUSTER_SUMMARY in files or CLUSTERS in files
        if clustered:
            summary = read_json(
                folder / (CLUSTER_SUMMARY if CLUSTER_SUMMARY in files else CLUSTERS)
            )
            embedding = folder / EMBEDDING_PNG
            found.clusters.append(
                ClusterRun(folder, summary, embedding if embedding.is_file() else None)
            )
        if MANIFEST in files:
            try:
                manifest = read_manifest(folder)
            except SynmedError as err:  # an old or broken set is no reason to fail the report
                found.skipped.append(f"{found.name(folder)}: shard set not read ({err.what})")
            else:
                found.shard_sets.append(
                    ShardSetRef(
                        folder,
                        str(manifest.attrs.get("source") or "unknown"),
                        manifest.count,
                        manifest.attrs,
                        clustered,
                    )
                )
    folders = [r.folder for r in results]
    for r in results:
        if _inside(r.folder, folders):
            continue  # a per-seed part of a merged result
        if r.task not in EVALUATORS:
            found.skipped.append(f"{found.name(r.folder)}: result of unknown task {r.task!r}")
            continue
        found.results.append(r)
    return found


def _sampling_summary(folder: Path, files: set[str]) -> dict[str, Any] | None:
    if SAMPLE_SUMMARY in files:
        return read_json(folder / SAMPLE_SUMMARY)
    if SUMMARY in files and METRICS not in files:
        body = read_json(folder / SUMMARY)
        if "sampler" in body:
            return body
    return None


def is_empty(found: Found) -> bool:
    """Nothing a report could show (a lone real shard set has nothing to compare with)."""
    return not (
        found.results or found.trainings or found.samplings or found.clusters or grid_pairs(found)
    )


def generator_sampling(result: EvalResult, found: Found) -> tuple[str | None, int | None]:
    """The sampler and step count behind a generator result's fake set: from its context when the
    evaluator recorded them, else from the fake set's manifest or its sampling summary."""
    ctx = result.context
    sampler, steps = ctx.get("sampler"), ctx.get("sampling_steps")
    if sampler is not None or steps is not None:
        return sampler, steps
    fake = ctx.get("fake")
    if not fake:
        return None, None
    folder = Path(fake)
    if not folder.is_absolute() and not folder.exists():
        folder = found.root / folder  # a relative path written from the run folder
    candidates = [r.attrs for r in found.shard_sets if r.folder.resolve() == folder.resolve()]
    candidates += [
        {**r.summary, "sampling_steps": r.summary.get("sampling_steps", r.summary.get("steps"))}
        for r in found.samplings
        if r.folder.resolve() == folder.resolve()
    ]
    if not candidates and (folder / MANIFEST).is_file():  # a fake set outside the run folder
        with contextlib.suppress(SynmedError):
            candidates.append(read_manifest(folder).attrs)
    for attrs in candidates:  # the first that names a step count (a merged set may not)
        if attrs.get("sampling_steps") is not None:
            return attrs.get("sampler"), attrs.get("sampling_steps")
    return None, None


def grid_pairs(found: Found, limit: int = 4) -> list[tuple[Path, Path]]:
    """(real, synthetic) shard sets to show side by side: each sampled set found (cluster outputs
    repeat their input and are left out) with the real set a generator evaluation compared it
    with, else the first real set found."""
    real = [s.folder for s in found.shard_sets if s.source == "real"]
    pairs = []
    for fake in (s for s in found.shard_sets if s.source == "synthetic" and not s.clustered):
        partner = real[0] if real else None
        for r in found.by_task("generator"):
            named, ref = r.context.get("fake"), r.context.get("real")
            if named and ref and Path(named).resolve() == fake.folder.resolve():
                if (Path(ref) / MANIFEST).is_file():
                    partner = Path(ref)
                break
        if partner is not None:
            pairs.append((partner, fake.folder))
    return pairs[:limit]
