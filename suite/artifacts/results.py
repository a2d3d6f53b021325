"""The evaluation-result schema: what every evaluator writes as ``result.json``, and
``synmed report`` (and a pipeline's seed merge) reads back.

One JSON object, written atomically (a reader sees the old file or the whole new one)::

    {"schema": "synmed-result", "version": 1,
     "evaluator": "classify" | "segment" | "generator",   # which evaluator wrote it
     "task": "classify" | "self_validate" | "self_validate_sweep" | "segment" | "generator",
     "inputs": {name: {"path", "sha256"}},   # what was evaluated: shard sets, backbone, classifier
     "settings": {...},                      # what the evaluator was told: config + digest, options
     "metrics": {name: {"mean", "std", "values", "ci95"} | number | null},
     "per_class": {...},
     ...evaluator-specific keys ("confusion", "per_case", "figure"),
     "context": {...}}                       # what the run found: split sizes, seeds, selection

``values`` holds one number per seed, in the order of ``context.seeds`` (``null`` where a seed's
value is undefined, e.g. an AUC with a class absent); ``mean`` and ``std`` are over the finite ones
(:func:`mean_std`: the one mean ± std of the suite). Metrics of one run (the generator's FID) are
plain numbers. JSON has no NaN: non-finite numbers are written as ``null``.

A reader checks ``schema`` and ``version`` before anything else: a file of another schema, of an
older layout (before versioning) or of a newer synmed is one error naming the file and the fix.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from suite.errors import DataError

if TYPE_CHECKING:
    from suite.artifacts.exports import ExportKind

RESULT_FILE = "result.json"
RESULT_SCHEMA = "synmed-result"
RESULT_VERSION = 1
# task -> the evaluator that writes it (self-validation is part of the classification evaluator)
EVALUATORS: dict[str, str] = {
    "classify": "classify",
    "self_validate": "classify",
    "self_validate_sweep": "classify",
    "segment": "segment",
    "generator": "generator",
}
# top-level keys the envelope owns; any other key of a result object is an evaluator's extra
_ENVELOPE = (
    "schema",
    "version",
    "evaluator",
    "task",
    "inputs",
    "settings",
    "metrics",
    "per_class",
    "context",
)


# -- mean ± std ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MeanStd:
    """A metric over seeds (or KID over subsets): mean, sample std and the values behind them."""

    mean: float | None
    std: float | None
    values: tuple[float | None, ...] = ()

    def ci95(self) -> tuple[float, float] | None:
        """The two-sided 95 % confidence interval of the mean, Student's t over the finite
        values (n - 1 degrees of freedom); None below two values. Over 3 seeds t = 4.30, so the
        interval is 2.5 std wide each side: say so before reading a difference as a gain."""
        finite = [v for v in self.values if v is not None]
        if self.mean is None or self.std is None or len(finite) < 2:
            return None
        from scipy.stats import t

        half = float(t.ppf(0.975, len(finite) - 1)) * self.std / math.sqrt(len(finite))
        return (self.mean - half, self.mean + half)

    def to_json(self) -> dict[str, Any]:
        ci = self.ci95()
        return {"mean": self.mean, "std": self.std, "values": list(self.values),
                "ci95": list(ci) if ci is not None else None}  # fmt: skip


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def mean_std(values: Iterable[float | None]) -> MeanStd:
    """Mean ± sample std (ddof 1) over the finite values; std 0 with one value (one seed has no
    spread to estimate), mean None with none. The values are kept, non-finite ones as None."""
    kept = tuple(float(v) if _finite(v) else None for v in values)
    finite = np.asarray([v for v in kept if v is not None], dtype=np.float64)
    mean = float(finite.mean()) if len(finite) else None
    std = float(finite.std(ddof=1)) if len(finite) > 1 else 0.0
    return MeanStd(mean, std, kept)


def summarize(values: Iterable[float | None]) -> dict[str, Any]:
    """:func:`mean_std` as the JSON object a result's metric holds."""
    return mean_std(values).to_json()


def finite_json(obj: Any) -> Any:
    """NaN and infinities as None (JSON has no NaN), through dicts, lists and tuples."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_json(v) for v in obj]
    return obj


# -- the result ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InputRef:
    """An evaluated input: its path and digest (None where it has none, e.g. a random init)."""

    path: str
    sha256: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256}


@dataclass(slots=True)
class Result:
    """One evaluation result (see the module docstring for the file it becomes)."""

    task: str
    metrics: dict[str, Any]
    per_class: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, InputRef] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # evaluator-specific top-level keys
    schema: str = RESULT_SCHEMA
    version: int = RESULT_VERSION

    @property
    def evaluator(self) -> str:
        return EVALUATORS.get(self.task, self.task)

    def to_json(self) -> dict[str, Any]:
        """The file's object (non-finite numbers still as they are; the writer nulls them)."""
        clash = sorted(set(self.extra) & set(_ENVELOPE))
        if clash:
            raise ValueError(f"result extras {clash} would overwrite envelope keys")
        return {
            "schema": self.schema,
            "version": self.version,
            "evaluator": self.evaluator,
            "task": self.task,
            "inputs": {name: ref.to_json() for name, ref in self.inputs.items()},
            "settings": self.settings,
            "metrics": self.metrics,
            "per_class": self.per_class,
            **self.extra,
            "context": self.context,
        }

    @classmethod
    def from_json(cls, body: Any, *, source: str) -> Result:
        """Check and read a result object (``source`` names the file in errors)."""
        rerun = "re-run the evaluation that wrote it (this synmed writes result schema version "
        rerun += f"{RESULT_VERSION})"
        if not isinstance(body, dict):
            raise DataError(f"{source} holds a JSON {type(body).__name__}, not an object", rerun)
        schema, version = body.get("schema"), body.get("version")
        if schema is None and "task" in body:
            raise DataError(
                f"{source} is an evaluation result of an older layout (no schema/version)", rerun
            )
        if schema != RESULT_SCHEMA:
            raise DataError(
                f"{source} is not a synmed evaluation result (schema {schema!r})", rerun
            )
        if not isinstance(version, int) or isinstance(version, bool):
            raise DataError(f"{source} has no integer result version ({version!r})", rerun)
        if version > RESULT_VERSION:
            raise DataError(
                f"{source} has result version {version}; this synmed reads version "
                f"{RESULT_VERSION}",
                "upgrade synmed-suite to read it",
            )
        if version != RESULT_VERSION:
            raise DataError(f"{source} has the unknown result version {version}", rerun)
        task = body.get("task")
        if not isinstance(task, str):
            raise DataError(f"{source} has no task", rerun)
        metrics = body.get("metrics")
        if not isinstance(metrics, dict):
            raise DataError(f"{source} has task {task!r} but no metrics object", rerun)
        for name, value in metrics.items():
            ok = value is None or _finite(value)
            ok = ok or (isinstance(value, dict) and {"mean", "std", "values"} <= set(value))
            if not ok:
                raise DataError(
                    f"{source}: metric {name!r} is neither a number nor a mean/std/values object",
                    rerun,
                )
        evaluator = body.get("evaluator")
        if task in EVALUATORS and evaluator != EVALUATORS[task]:
            raise DataError(
                f"{source}: task {task!r} is written by the {EVALUATORS[task]} evaluator, "
                f"the file says {evaluator!r}",
                rerun,
            )
        try:
            inputs = {
                str(name): InputRef(str(ref["path"]), ref.get("sha256"))
                for name, ref in (body.get("inputs") or {}).items()
            }
        except (AttributeError, KeyError, TypeError):
            raise DataError(f"{source}: inputs are not {{name: {{path, sha256}}}}", rerun) from None
        return cls(
            task=task,
            metrics=metrics,
            per_class=body.get("per_class") or {},
            context=body.get("context") or {},
            inputs=inputs,
            settings=body.get("settings") or {},
            extra={k: v for k, v in body.items() if k not in _ENVELOPE},
            schema=schema,
            version=version,
        )


def result_path(path: Path | str) -> Path:
    """``path`` if it is a file, else its ``result.json``."""
    path = Path(path)
    return path if path.suffix == ".json" else path / RESULT_FILE


def write_result(path: Path | str, result: Result) -> dict[str, Any]:
    """Write ``result`` to ``path`` (a folder: its ``result.json``) atomically; returns the
    object exactly as the file holds it (non-finite numbers as None)."""
    from suite.artifacts.files import atomic_write_text

    if result.task not in EVALUATORS:
        raise ValueError(f"unknown evaluation task {result.task!r}")
    file = result_path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(finite_json(result.to_json()), indent=1, allow_nan=False, default=str)
    atomic_write_text(file, text + "\n")
    return json.loads(text)


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path`` (a stage's result or summary); anything else is a DataError
    naming the file."""
    try:
        body = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise DataError(
            f"{path} cannot be read as JSON ({err})",
            "re-run the stage that wrote it, or move the file out of the run folder",
        ) from None
    if not isinstance(body, dict):
        raise DataError(
            f"{path} holds a JSON {type(body).__name__}, not an object",
            "re-run the stage that wrote it, or move the file out of the run folder",
        )
    return body


def read_result(path: Path | str) -> Result:
    """Read and check a ``result.json`` (or the one in folder ``path``)."""
    file = result_path(path)
    return Result.from_json(read_json(file), source=str(file))


def shard_input(path: Path | str) -> InputRef:
    """A shard set as an input: its folder and the digest of its manifest (which covers every
    shard through their digests)."""
    from suite.artifacts.digests import sha256_file
    from suite.data.shards import MANIFEST

    folder = Path(path).resolve()
    return InputRef(str(folder), sha256_file(folder / MANIFEST))


def export_input(path: Path | str, kind: ExportKind) -> InputRef:
    """An export folder (a backbone, a classifier) as an input: its folder and its digest (the
    sha256 of its metadata file, which covers every file through their digests)."""
    from suite.artifacts.exports import read_export

    folder, _, digest = read_export(Path(path), kind, verify=False)  # the loader verified it
    return InputRef(str(folder.resolve()), digest)
