"""Classifier-in-the-loop sampling: ``synmed sample --accept CLASSIFIER``.

Seed 003 keeps only generated images that a classifier trained on real images recognises as their
class ("discarded and regenerated until correctly classified"). Here a row is accepted when the
classifier (an export of ``synmed evaluate classify``, loaded and digest-checked by
:func:`~suite.evaluation.classify.finetune.load_classifier`) predicts the row's label and gives it
softmax confidence >= ``min_confidence``. Rejected rows of a shard are drawn again, together, with
attempt ``a + 1`` (noise from (seed, index, attempt)), up to ``max_attempts`` attempts.

A row that runs out keeps its last attempt, flagged ``accepted = False``: every index stays in the
set, so indices stay dense and a set is the same whatever the acceptance rate; readers keep the
accepted rows with ``ShardDataset(..., accepted_only=True)``. Each row carries ``attempts``,
``confidence`` (the label's probability at its last attempt) and ``accepted``.

Each image is classified alone: cuDNN and oneDNN choose kernels by batch size, so a batched
probability would depend on which rows shared the batch, and with it the decision and the
``confidence`` column. Alone, both are a function of the image, whatever the batching or worker.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from suite.errors import ConfigError, DataError, ShardError

# the columns an accepting job adds to each shard
COLUMNS = ("attempts", "confidence", "accepted")
DEFAULT_MIN_CONFIDENCE = 0.5
DEFAULT_MAX_ATTEMPTS = 10
# columns a redraw never changes: they belong to the index, not to the attempt
_PER_INDEX = ("index", "source_index", "labels")


@dataclass(frozen=True, slots=True)
class AcceptSettings:
    """What the sampling plan records of an acceptance filter (its digest covers these)."""

    digest: str
    min_confidence: float
    max_attempts: int


def check_settings(min_confidence: float, max_attempts: int) -> None:
    """Refuse a threshold outside (0, 1] or fewer than one attempt (before anything loads)."""
    if not 0.0 < min_confidence <= 1.0:
        raise ConfigError(
            f"--min-confidence is {min_confidence}, it must lie in (0, 1]",
            "pass a softmax probability such as --min-confidence 0.5",
        )
    if max_attempts < 1:
        raise ConfigError(
            f"--max-attempts is {max_attempts}, it must be at least 1",
            "pass --max-attempts K >= 1 (1 scores every row without redrawing)",
        )


def accept_settings(
    path: Path | None, min_confidence: float | None, max_attempts: int | None
) -> tuple[AcceptSettings, list[str]] | None:
    """Check the options and load the classifier once in the driver (kind and digests checked):
    the plan's settings and the classifier's class names, or None without ``--accept``. The
    actors load it again, on their device."""
    from suite.evaluation.classify.finetune import load_classifier

    if path is None:
        if min_confidence is not None or max_attempts is not None:
            raise ConfigError(
                "--min-confidence and --max-attempts set the filter of --accept, which is not given",
                "add --accept CLASSIFIER, or drop them",
            )
        return None
    min_confidence = DEFAULT_MIN_CONFIDENCE if min_confidence is None else min_confidence
    max_attempts = DEFAULT_MAX_ATTEMPTS if max_attempts is None else max_attempts
    check_settings(min_confidence, max_attempts)
    _, body, digest = load_classifier(path, option="--accept")
    if body.get("multilabel"):
        raise DataError(
            f"--accept {path} is a multi-label classifier",
            "pass a single-label classifier: acceptance compares one predicted class per image",
        )
    settings = AcceptSettings(digest, float(min_confidence), int(max_attempts))
    return settings, list(body["class_names"])


def check_plan(
    path: Path,
    class_names: Sequence[str],
    classifier_names: Sequence[str],
    *,
    conditional: bool,
    num_classes: int,
) -> None:
    """The generator's rows must carry labels the classifier knows (matched by name, as
    self-validation does)."""
    if not num_classes:
        raise ConfigError(
            "--accept compares each row's class with the classifier's prediction; this "
            "generator is unconditional",
            "sample a class-conditional generator (model.num_classes > 0), or drop --accept",
        )
    if not conditional:
        raise ConfigError(
            "--accept needs a label per row",
            "sample with --per-class N or --class-weights W1,...,WK (or --conditions with labels)",
        )
    unknown = [n for n in class_names if n not in classifier_names]
    if unknown:
        raise DataError(
            f"--accept {path} does not know the generator's class(es) {unknown} (it has "
            f"{list(classifier_names)})",
            "pass a classifier trained on the generator's classes (matched by name)",
        )


class Acceptor:
    """The classifier inside a sampling actor, on the actor's device."""

    def __init__(self, path: Path, plan: Any, device: Any) -> None:
        from suite.evaluation.classify.finetune import load_classifier

        model, body, digest = load_classifier(path, option="--accept")
        if digest != plan.accept_digest:
            raise ShardError(
                f"the classifier {path} changed since the job was planned (digest differs)",
                "sample into a new --out, or restore the classifier",
            )
        names = list(body["class_names"])
        # generator class id -> the classifier's column of the same name
        self.column = np.array([names.index(n) for n in plan.class_names], dtype=np.int64)
        self.model = model.to(device).eval()
        self.device = device
        self.min_confidence = float(plan.min_confidence)
        self.max_attempts = int(plan.max_attempts)

    def judge(self, images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(confidence of each row's label, accepted) for uint8 (B, C, H, W) images."""
        import torch

        columns = self.column[labels]
        confidence = np.empty(len(images), dtype=np.float32)
        predicted = np.empty(len(images), dtype=np.int64)
        with torch.inference_mode():
            for row, image in enumerate(images):
                x = torch.from_numpy(np.ascontiguousarray(image[None])).to(self.device)
                probs = self.model(x).float().softmax(dim=1)[0].cpu().numpy()
                confidence[row] = probs[columns[row]]
                predicted[row] = int(probs.argmax())
        return confidence, (predicted == columns) & (confidence >= self.min_confidence)

    def filter(
        self,
        arrays: dict[str, np.ndarray],
        redraw: Callable[[np.ndarray, int], dict[str, np.ndarray]],
    ) -> dict[str, np.ndarray]:
        """Score the rows of attempt 0; redraw the rejected ones with ``redraw(indices,
        attempt)`` until each is accepted or has had ``max_attempts`` attempts. Returns the
        arrays with each row's last attempt and the acceptance columns."""
        arrays = {k: v.copy() for k, v in arrays.items()}
        labels = arrays["labels"]
        attempts = np.ones(len(labels), dtype=np.int64)
        confidence, accepted = self.judge(arrays["images"], labels)
        for attempt in range(1, self.max_attempts):
            rows = np.flatnonzero(~accepted)
            if not len(rows):
                break
            again = redraw(arrays["index"][rows], attempt)
            for key, value in again.items():
                if key not in _PER_INDEX:
                    arrays[key][rows] = value
            attempts[rows] = attempt + 1
            confidence[rows], accepted[rows] = self.judge(again["images"], labels[rows])
        return {**arrays, "attempts": attempts, "confidence": confidence, "accepted": accepted}


def acceptance_summary(out: Path, plan: Any) -> dict[str, Any]:
    """Per class: rows, accepted rows and the rate; how many indices ran out of attempts."""
    from suite.data.dataset import ShardDataset

    data = ShardDataset(out, verify="none")  # every shard verified or written by this run
    accepted = data.read_column("accepted")
    attempts = data.read_column("attempts")
    labels = data.labels
    assert accepted is not None and attempts is not None and labels is not None
    per_class = {}
    for c, name in enumerate(plan.class_names):
        rows = labels == c
        n, k = int(rows.sum()), int(accepted[rows].sum())
        per_class[name] = {"rows": n, "accepted": k, "rate": k / n if n else None}
    return {
        "classifier_digest": plan.accept_digest,
        "min_confidence": plan.min_confidence,
        "max_attempts": plan.max_attempts,
        "accepted": int(accepted.sum()),
        "rate": float(accepted.mean()) if len(accepted) else None,
        "ran_out": int((~accepted).sum()),
        "mean_attempts": float(attempts.mean()) if len(attempts) else None,
        "per_class": per_class,
    }
