"""Self-validation (seed 003, Choudhary 2025): does a classifier trained on real images recognise
the class each generated image was meant to show?

A classifier fine-tuned on real data (exported by ``synmed evaluate classify``, fine-tune
protocol) predicts every image of a generated shard set; the set's labels are the intended
classes. Per class: TP = generated for c and predicted c, FN = generated for c and predicted
otherwise, FP = generated for another class and predicted c, hence precision, recall and F1.
Micro (pooled TP/FP/FN) and macro (mean of per-class values) are reported apart: seed 003's
"aggregate" numbers had F1 below both precision and recall, which only a macro average can give,
and with one label per image micro precision = recall = F1 = accuracy.

Fake-set classes are matched to the classifier's by name, never by index.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from suite.artifacts.results import InputRef, Result, shard_input, summarize, write_result
from suite.data.dataset import ShardDataset
from suite.data.writer import staged_output
from suite.errors import DataError
from suite.evaluation.classify.data import Rows, open_shards, remap_labels, require_labels
from suite.evaluation.classify.finetune import load_classifier, predict
from suite.evaluation.classify.metrics import Scores, single_label_scores
from suite.evaluation.classify.run import write_tables


def open_classifier(classifier: Path) -> tuple[Any, dict[str, Any], str]:
    """The classifier export (model, body, digest); a multi-label one is refused."""
    model, config, digest = load_classifier(classifier)
    if config.get("multilabel"):
        raise DataError(
            f"{classifier} is a multi-label classifier", "self-validation needs one label per image"
        )
    return model, config, digest


def check_classes(generated: list[str], names: list[str], what: str) -> None:
    """Every generated class must be one the classifier knows (matched by name)."""
    foreign = [n for n in generated if n not in names]
    if foreign:
        raise DataError(
            f"{what} has classes {foreign} that the classifier does not know ({names})",
            "use a classifier trained on the classes the generator was asked for "
            "(classes are matched by name)",
        )


def fake_rows(
    fake: Path, config: dict[str, Any], hashed: set[Path] | None = None
) -> tuple[Rows, ShardDataset]:
    """The generated set's rows, labels in the classifier's class order, and its first open.
    ``hashed``: sets whose digests the caller already checked (this call adds ``fake``)."""
    names: list[str] = config["class_names"]
    hashed = set() if hashed is None else hashed  # hashed at the first open
    probe = open_shards(Path(fake), "--fake", hashed)
    require_labels(probe, "--fake")
    if probe.label_kind == "multilabel":
        raise DataError(f"--fake {fake} is multi-label", "generate one intended class per image")
    check_classes(probe.class_names, names, f"--fake {fake}")
    ds = open_shards(Path(fake), "--fake", hashed)
    if len(ds) == 0:
        raise DataError(f"--fake {fake} holds no images", "sample some first")
    shape = tuple(int(v) for v in ds[0]["image"].shape)
    trained = config.get("data_shape")
    if trained is not None and shape[0] != trained[0]:
        raise DataError(
            f"--fake {fake} has {shape[0]}-channel images, the classifier was trained on "
            f"{trained[0]}-channel ones",
            f"sample (or ingest) the generated set with {trained[0]} channel(s)",
        )
    return Rows(ds, remap_labels(ds, names, "--fake", False), f"{fake}:all"), probe


def score_rows(model: Any, rows: Rows, names: list[str], batch_size: int) -> Scores:
    """The classifier's predictions on every row, scored against the intended classes."""
    probs, _ = predict(model, rows.subset(np.arange(len(rows))), batch_size)
    return single_label_scores(rows.labels, probs, names)


def per_class_json(s: Scores) -> dict[str, dict[str, Any]]:
    """Per-class scores as a result's ``per_class`` entry (one run: no spread)."""
    return {c: {m: summarize([v]) for m, v in vals.items()} for c, vals in s.per_class.items()}


def confusion_json(s: Scores, names: list[str]) -> dict[str, Any]:
    """The confusion matrix as a result's ``confusion`` entry."""
    return {
        "classes": names,
        "kind": "single",
        "total": s.confusion,
        "per_seed": {"0": s.confusion},
    }


def self_validate(
    classifier: Path,
    fake: Path,
    out: Path,
    *,
    batch_size: int = 128,
    overwrite: bool = False,
    hashed: set[Path] | None = None,
    log: Callable[[str], None] = lambda m: print(m, file=sys.stderr),
) -> dict[str, Any]:
    """Score ``classifier`` on the generated set ``fake``; write ``out/result.json`` + CSVs.
    ``hashed``: shared by the calls of one run, so a set scored by several classifiers has its
    digests checked once."""
    model, config, classifier_digest = open_classifier(classifier)
    names: list[str] = config["class_names"]
    rows, probe = fake_rows(fake, config, hashed)
    log(f"classifying {len(rows)} generated images with {classifier}")
    with staged_output(Path(out), overwrite=overwrite, inputs=(fake, classifier)) as stage:
        s = score_rows(model, rows, names, batch_size)
        result = Result(
            task="self_validate",
            metrics={f"self_validation.{k}": summarize([v]) for k, v in s.metrics.items()},
            per_class={"self_validation": per_class_json(s)},
            extra={"confusion": {"self_validation": confusion_json(s, names)}},
            inputs={
                "classifier": InputRef(str(Path(classifier).resolve()), classifier_digest),
                "fake": shard_input(fake),
            },
            settings={"batch_size": batch_size},
            context={
                "classifier": str(Path(classifier).resolve()),
                "classifier_sha256": classifier_digest,
                "classifier_provenance": config.get("provenance", {}),
                "fake": str(Path(fake).resolve()),
                "fake_attrs": {k: v for k, v in probe.manifest.attrs.items() if k != "class_names"},
                "images": len(rows),
                "intended_per_class": np.bincount(rows.labels, minlength=len(names)).tolist(),
                "class_names": names,
            },
        )
        written = write_result(stage, result)
        write_tables(stage, written)
    return written
