"""A whole segmentation evaluation: check inputs, train every seed, score per case, write the output.

``<out>/`` (written to a staging folder and moved in only when complete):

``result.json``
    the result schema of :mod:`suite.artifacts.results` (evaluator ``segment``): ``inputs``
    (shards, synthetic, backbone with their digests), ``settings`` (config and its digest),
    ``metrics`` ``{name: {"mean", "std", "values", "case_std"}}``, ``per_class`` ``{class: {name:
    {...}}}``, ``per_case`` ``"per_case.csv"``, ``figure``, ``context``. ``values`` holds one
    number per seed: the mean over report cases of the mean over foreground classes; ``mean`` and
    ``std`` (sample std, 0 with one seed) are over seeds; ``case_std`` is over every (seed, case).
``per_case.csv``
    one row per seed, case and class (plus class ``mean``): the metrics of :mod:`.metrics`.
``cases.png``
    a few validation cases of the first seed's selected model.
``history.json``
    per seed and epoch: training loss and validation Dice.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import monai
import numpy as np
import torch

from suite.artifacts.results import (
    RESULT_FILE,
    InputRef,
    Result,
    export_input,
    shard_input,
    summarize,
    write_result,
)
from suite.config import config_digest, to_dict
from suite.data.writer import staged_output
from suite.errors import DataError
from suite.evaluation.segment.config import SegmentEvalConfig
from suite.evaluation.segment.data import SegmentSets, open_sets
from suite.evaluation.segment.figure import overlay_figure
from suite.evaluation.segment.metrics import METRICS, case_metrics
from suite.evaluation.segment.train import build_model, fit, predict

RESULT = RESULT_FILE
PER_CASE = "per_case.csv"
FIGURE = "cases.png"


def _cases(sets: SegmentSets, mode: str) -> list[tuple[str, np.ndarray]]:
    """(case id, row positions) of the report split: one per image, or per group in index order."""
    ds = sets.report
    if mode == "image":
        return [(str(int(i)), np.array([p])) for p, i in enumerate(ds.indices)]
    groups = ds.read_column("group")
    if groups is None:
        raise DataError(
            f"{ds.directory} has no group column, so data.cases=group has no volumes to form",
            "use data.cases=image",
        )
    order = np.argsort(ds.indices, kind="stable")
    return [(str(g), order[groups[order] == g]) for g in dict.fromkeys(groups[order])]


def _summary(per_seed: list[float], per_case: list[float]) -> dict[str, Any]:
    """Mean ± std over seeds, plus the spread over every (seed, case)."""
    return {**summarize(per_seed), "case_std": float(np.std(per_case))}


def _inputs(cfg: SegmentEvalConfig) -> dict[str, InputRef]:
    assert cfg.data.shards is not None  # open_sets refused a config without it
    inputs = {"shards": shard_input(cfg.data.shards)}
    if cfg.data.synthetic is not None:
        inputs["synthetic"] = shard_input(cfg.data.synthetic)
    if cfg.model.backbone is not None:
        inputs["backbone"] = export_input(cfg.model.backbone, "backbone")
    return inputs


def _training_data(cfg: SegmentEvalConfig) -> dict[str, Any]:
    tc, kind = cfg.train, cfg.train.training_data
    out: dict[str, Any] = {"kind": kind, "real": str(cfg.data.shards)}
    if kind != "real":
        out["synthetic"] = str(cfg.data.synthetic)
        out["synthetic_split"] = cfg.data.synthetic_split
    if kind == "mixed":
        out["synthetic_ratio"] = tc.synthetic_ratio
    if kind == "merging":
        out.update(alpha=tc.alpha, merge_patch=tc.merge_patch, alpha_means="P(patch stays real)")
    if tc.augment:
        out["augment"] = {"names": list(tc.augment), "prob": tc.augment_prob, "library": "monai"}
    return out


def evaluate_segmentation(
    cfg: SegmentEvalConfig, out: Path | None = None, *, overwrite: bool = False
) -> dict[str, Any]:
    """Run every seed of ``cfg`` and write ``out`` (default ``run.out_dir/run.name``)."""
    out = Path(out) if out is not None else cfg.run.out_dir / cfg.run.name
    tc = cfg.train
    if tc.threads is not None:
        torch.set_num_threads(tc.threads)
    # every input check happens here, before the first epoch
    sets = open_sets(cfg.data, tc)
    torch.manual_seed(tc.seeds[0])
    description = build_model(cfg.model, sets).description  # backbone file and channels checked
    cases = _cases(sets, cfg.data.cases)
    foreground = sets.foreground
    names = sets.class_names

    rows: list[dict[str, Any]] = []
    per_seed: dict[str, list[float]] = {m: [] for m in METRICS}
    per_class_seed: dict[str, dict[str, list[float]]] = {
        names[k]: {m: [] for m in METRICS} for k in foreground
    }
    case_values: dict[str, list[float]] = {m: [] for m in METRICS}
    class_case_values: dict[str, dict[str, list[float]]] = {
        names[k]: {m: [] for m in METRICS} for k in foreground
    }
    selection: dict[str, list[Any]] = {"best_epoch": [], "best_val_dice": []}
    history: dict[str, Any] = {}
    inputs = (cfg.data.shards, cfg.data.synthetic, cfg.model.backbone)
    # refuses a non-empty out, or one inside an input, up front
    with staged_output(out, overwrite=overwrite, inputs=inputs) as stage:
        for n, seed in enumerate(tc.seeds):
            torch.manual_seed(seed)
            np.random.seed(seed)
            model = build_model(cfg.model, sets)
            fitted = fit(model, sets, cfg, seed)
            selection["best_epoch"].append(fitted.best_epoch)
            selection["best_val_dice"].append(fitted.best_val_dice)
            history[str(seed)] = fitted.history
            pred, truth = predict(model, sets.report, tc.batch_size)
            seed_cases: dict[str, list[float]] = {m: [] for m in METRICS}
            seed_class: dict[str, dict[str, list[float]]] = {
                names[k]: {m: [] for m in METRICS} for k in foreground
            }
            for case, positions in cases:
                scores = case_metrics(pred[positions], truth[positions], foreground)
                for k, values in scores.items():
                    rows.append({"seed": seed, "case": case, "class": names[k], **values})
                    for m in METRICS:
                        seed_class[names[k]][m].append(values[m])
                mean = {m: float(np.mean([s[m] for s in scores.values()])) for m in METRICS}
                rows.append({"seed": seed, "case": case, "class": "mean", **mean})
                for m in METRICS:
                    seed_cases[m].append(mean[m])
            for m in METRICS:
                per_seed[m].append(float(np.mean(seed_cases[m])))
                case_values[m].extend(seed_cases[m])
                for name in seed_class:
                    per_class_seed[name][m].append(float(np.mean(seed_class[name][m])))
                    class_case_values[name][m].extend(seed_class[name][m])
            if n == 0 and cfg.report.figure_cases:
                _figure(model, sets, cfg.report.figure_cases, tc.batch_size, stage / FIGURE)

        with open(stage / PER_CASE, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["seed", "case", "class", *METRICS])
            writer.writeheader()
            writer.writerows(rows)
        (stage / "history.json").write_text(json.dumps(history, indent=1))
        result = Result(
            task="segment",
            metrics={m: _summary(per_seed[m], case_values[m]) for m in METRICS},
            per_class={
                name: {
                    m: _summary(per_class_seed[name][m], class_case_values[name][m])
                    for m in METRICS
                }
                for name in per_class_seed
            },
            extra={"per_case": PER_CASE, "figure": FIGURE if cfg.report.figure_cases else None},
            inputs=_inputs(cfg),
            settings={"config": to_dict(cfg), "config_digest": config_digest(cfg)},
            context={
                "encoder": description,
                "seeds": list(tc.seeds),
                "split_sizes": sets.split_sizes(cfg.data.eval_split),
                "training_data": _training_data(cfg),
                "report_split": cfg.data.eval_split,
                "selection": {"split": "val", "metric": "mean foreground Dice", **selection},
                "selection_biased": cfg.data.eval_split == "val",
                "cases": cfg.data.cases,
                "num_cases": len(cases),
                "classes": names,
                "scored_classes": [names[k] for k in foreground],
                "image_shape": list(sets.image_shape),
                "hd95_unit": "pixels",
                # loss, metrics and the monai_* networks come from it: their values follow it
                "monai_version": monai.__version__,
                "epochs": tc.epochs,
            },
        )
        written = write_result(stage, result)
    return written


def _figure(model: Any, sets: SegmentSets, count: int, batch_size: int, path: Path) -> None:
    """Evenly spaced validation cases, preferring ones with foreground."""
    pred, truth = predict(model, sets.val, batch_size)
    candidates = [i for i in range(len(truth)) if truth[i].any()] or list(range(len(truth)))
    chosen = [
        candidates[int(j)] for j in np.linspace(0, len(candidates) - 1, min(count, len(candidates)))
    ]
    images = np.stack([sets.val[i]["image"].numpy() for i in chosen])
    titles = [f"val index {int(sets.val.indices[i])}" for i in chosen]
    overlay_figure(images, truth[chosen], pred[chosen], sets.class_names, path, titles=titles)
