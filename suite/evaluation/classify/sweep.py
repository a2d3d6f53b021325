"""Self-validation swept over a generator run's saved checkpoints (seed 003's table per step).

Each saved step is sampled (``per_class`` images per class, through the sampling job, so the sets
resume and are byte-identical whatever the worker count) into ``OUT/samples/step-NNNNNNNN/``, then
scored by the classifier as ``synmed evaluate self-validate`` does. One result, task
``self_validate_sweep``, holds every step: metrics ``step_N.<metric>`` (precision, recall and F1
macro and micro, accuracy ...), per-class precision/recall/F1 under ``per_class["step_N"]``, a
confusion matrix per step, and ``context.steps`` in order. A rerun of the same command keeps the
sampled sets that verify and samples the rest.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from suite.artifacts.results import InputRef, Result, shard_input, summarize, write_result
from suite.errors import ConfigError, DataError, ShardError

if TYPE_CHECKING:
    from suite.evaluation.classify.metrics import Scores

SAMPLES = "samples"
TASK = "self_validate_sweep"


@dataclass(slots=True)
class _Step:
    step: int
    fake: Path
    labels: np.ndarray  # intended classes, in the classifier's order
    scores: Scores
    summary: dict[str, Any]  # the sampling job's


def step_key(step: int) -> str:
    """A step's name in the result's metrics, per_class and confusion."""
    return f"step_{step}"


def self_validate_sweep(
    run: Path,
    classifier: Path,
    out: Path,
    *,
    per_class: int,
    steps: list[int] | None = None,
    sampler: str | None = None,
    sampling_steps: int = 1000,
    seed: int = 0,
    sample_batch_size: int = 32,
    batch_size: int = 128,
    workers: int = 1,
    ray_address: str | None = None,
    log: Callable[[str], None] = lambda m: print(m, file=sys.stderr),
) -> dict[str, Any]:
    """Sample and score every saved step of ``run`` (or ``steps``); write ``out/result.json``."""
    # torch and the models load here: the report reads step_key without them
    from suite.data.writer import check_outside_inputs
    from suite.evaluation.classify.run import write_tables
    from suite.evaluation.classify.self_validation import (
        check_classes,
        confusion_json,
        fake_rows,
        open_classifier,
        per_class_json,
        score_rows,
    )
    from suite.generative.checkpoints import load_checkpoint_generator, run_folder, saved_steps
    from suite.launch.ray_runtime import ray_session
    from suite.sampling.job import run_sampling

    run, out = run_folder(run), Path(out)
    saved = saved_steps(run)
    if not saved:
        raise DataError(
            f"{run} holds no saved checkpoints (no complete checkpoints/step-*/ folder)",
            "pass the folder of a `synmed train generator` run (run.out_dir/run.name) that "
            "saved checkpoints (train.checkpoint_every)",
        )
    chosen = sorted(set(steps)) if steps else saved
    unknown = [s for s in chosen if s not in saved]
    if unknown:
        raise ConfigError(
            f"{run} has no checkpoint of step(s) {', '.join(map(str, unknown))}; saved steps: "
            + ", ".join(map(str, saved)),
            "pass --steps with saved steps only, or drop --steps to sweep them all",
        )
    if per_class < 1:
        raise ConfigError(f"--per-class is {per_class}", "pass --per-class N with N >= 1")
    model, config, classifier_digest = open_classifier(classifier)
    names: list[str] = config["class_names"]
    generator, _ = load_checkpoint_generator(run, chosen[0])
    if not generator.num_classes:
        raise DataError(
            f"{run} trains an unconditional generator: its images have no intended class",
            "sweep a class-conditional run (model.num_classes > 0)",
        )
    check_classes(generator.class_names, names, f"the generator run {run}")
    trained, channels = config.get("data_shape"), getattr(generator.config, "channels", None)
    if trained is not None and channels is not None and channels != trained[0]:
        raise DataError(
            f"{run} makes {channels}-channel images, the classifier {classifier} was trained on "
            f"{trained[0]}-channel ones",
            "use a classifier trained on images like the generator's",
        )
    del generator
    check_outside_inputs(out, (run, classifier))
    if out.exists() and any(out.iterdir()) and not (out / SAMPLES).is_dir():
        raise ShardError(
            f"{out} is not empty and is not a self-validation sweep (no {SAMPLES}/ in it)",
            "choose a new --out (a rerun into the same --out resumes the sweep)",
        )
    scored: list[_Step] = []
    with ray_session(ray_address):  # one Ray for every step's sampling job
        for step in chosen:
            fake = out / SAMPLES / f"step-{step:08d}"
            log(f"self-validation sweep: step {step} ({len(scored) + 1} of {len(chosen)})")
            summary = run_sampling(
                run, fake, num_images=None, per_class=per_class, batch_size=sample_batch_size,
                sampler=sampler, steps=sampling_steps, seed=seed, workers=workers,
                ray_address=ray_address, checkpoint_step=step,
            )  # fmt: skip
            rows, _ = fake_rows(fake, config)
            scores = score_rows(model, rows, names, batch_size)
            scored.append(_Step(step, fake, rows.labels, scores, summary))
    first = scored[0].summary
    result = Result(
        task=TASK,
        metrics={
            f"{step_key(t.step)}.{k}": summarize([v])
            for t in scored
            for k, v in t.scores.metrics.items()
        },
        per_class={step_key(t.step): per_class_json(t.scores) for t in scored},
        extra={"confusion": {step_key(t.step): confusion_json(t.scores, names) for t in scored}},
        inputs={
            "classifier": InputRef(str(Path(classifier).resolve()), classifier_digest),
            "run": InputRef(str(run.resolve()), None),
            **{f"fake_{step_key(t.step)}": shard_input(t.fake) for t in scored},
        },
        settings={
            "per_class": per_class,
            "steps": chosen,
            "sampler": first["sampler"],
            "sampling_steps": first["sampling_steps"],
            "seed": seed,
            "batch_size": batch_size,
        },
        context={
            "run": str(run.resolve()),
            "steps": chosen,
            "checkpoint_digests": {
                step_key(t.step): t.summary["checkpoint_digest"] for t in scored
            },
            "classifier": str(Path(classifier).resolve()),
            "classifier_sha256": classifier_digest,
            "classifier_provenance": config.get("provenance", {}),
            "images_per_step": len(scored[0].labels),
            "intended_per_class": np.bincount(scored[0].labels, minlength=len(names)).tolist(),
            "class_names": names,
            "sampler": first["sampler"],
            "sampling_steps": first["sampling_steps"],
        },
    )
    written = write_result(out, result)
    write_tables(out, written)
    return written
