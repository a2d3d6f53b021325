"""A whole segmentation evaluation: check inputs, train every seed, score per case, write the output.

``<out>/`` (written to a staging folder and moved in only when complete):

``result.json``
    the result schema of :mod:`suite.artifacts.results` (evaluator ``segment``): ``inputs``
    (shards, synthetic, backbone with their digests), ``settings`` (config and its digest),
    ``metrics`` ``{name: {"mean", "std", "values", "case_std"}}``, ``per_class`` ``{class: {name:
    {...}}}``, ``per_case`` ``"per_case.csv"``, ``figure``, ``context``. ``values`` holds one
    number per seed (with ``data.folds`` K > 1: per (fold, seed), in ``context.runs`` order): the
    mean over report cases of the mean over foreground classes; ``mean`` and ``std`` (sample std, 0
    with one value) are over those; ``case_std`` is over every (fold, seed, case). With folds,
    ``context.folds`` holds each fold's split sizes and group ids.
``per_case.csv``
    one row per seed, case and class (plus class ``mean``): the metrics of :mod:`.metrics`; with
    folds a leading ``fold`` column.
``cases.png``
    a few validation cases of the first seed's selected model.
``history.json``
    per seed (``fold{k}/{seed}`` with folds) and epoch: training loss and validation Dice.
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
from suite.evaluation.segment.patches import Window
from suite.evaluation.segment.train import build_model, fit, inference_window, predict

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
    for k, path in enumerate(cfg.data.synthetic_folds or []):
        inputs[f"synthetic_fold{k}"] = shard_input(path)
    if cfg.model.backbone is not None:
        inputs["backbone"] = export_input(cfg.model.backbone, "backbone")
    return inputs


def _training_data(cfg: SegmentEvalConfig, all_sets: list[SegmentSets]) -> dict[str, Any]:
    tc, kind = cfg.train, cfg.train.training_data
    out: dict[str, Any] = {"kind": kind, "real": str(cfg.data.shards)}
    if kind != "real":
        if cfg.data.synthetic_folds is not None:
            out["synthetic_folds"] = [str(p) for p in cfg.data.synthetic_folds]
        else:
            out["synthetic"] = str(cfg.data.synthetic)
        out["synthetic_split"] = cfg.data.synthetic_split
        # rows read and rows kept (made from a training row) per fold
        rows = [sets.synthetic_rows for sets in all_sets]
        out["synthetic_rows"] = rows[0] if cfg.data.folds == 1 else rows
    if kind == "mixed":
        out["synthetic_ratio"] = tc.synthetic_ratio
    if kind == "merging":
        out.update(alpha=tc.alpha, merge_patch=tc.merge_patch, alpha_means="P(patch stays real)")
        out["partner"] = (
            "one of the real row's own synthetic versions (source_index)"
            if tc.partner == "own"
            else "any synthetic row"
        )
    if tc.augment:
        out["augment"] = {"names": list(tc.augment), "prob": tc.augment_prob, "library": "monai"}
    if tc.patch_size is not None:
        out["patches"] = {
            "patch_size": tc.patch_size,
            "crop": "one seeded random crop per row and epoch",
            "inference": "monai.inferers.sliding_window_inference",
            "window_overlap": tc.window_overlap,
        }
    return out


def _folds_context(cfg: SegmentEvalConfig, all_sets: list[SegmentSets]) -> dict[str, Any]:
    data = cfg.data
    return {
        "k": data.folds,
        "by": "group",
        "assignment": "sklearn KFold over sorted unique groups (suite/data/folds.py)",
        "val_fraction": data.fold_val_fraction,
        "shuffle_seed": data.fold_shuffle_seed,
        "per_fold": [
            {"split_sizes": sets.split_sizes("test"), "groups": sets.groups} for sets in all_sets
        ],
    }


def evaluate_segmentation(
    cfg: SegmentEvalConfig, out: Path | None = None, *, overwrite: bool = False
) -> dict[str, Any]:
    """Run every fold and seed of ``cfg`` and write ``out`` (default ``run.out_dir/run.name``)."""
    out = Path(out) if out is not None else cfg.run.out_dir / cfg.run.name
    tc, folds = cfg.train, cfg.data.folds
    if tc.threads is not None:
        torch.set_num_threads(tc.threads)
    # every input check happens here, for every fold, before the first epoch
    all_sets = [open_sets(cfg.data, tc, fold) for fold in range(folds)]
    torch.manual_seed(tc.seeds[0])
    # backbone file and channels checked
    description = build_model(cfg.model, all_sets[0], tc.patch_size).description
    all_cases = [_cases(sets, cfg.data.cases) for sets in all_sets]
    foreground = all_sets[0].foreground
    names = all_sets[0].class_names
    window = inference_window(cfg)

    rows: list[dict[str, Any]] = []
    per_run: dict[str, list[float]] = {m: [] for m in METRICS}
    per_class_run: dict[str, dict[str, list[float]]] = {
        names[k]: {m: [] for m in METRICS} for k in foreground
    }
    case_values: dict[str, list[float]] = {m: [] for m in METRICS}
    class_case_values: dict[str, dict[str, list[float]]] = {
        names[k]: {m: [] for m in METRICS} for k in foreground
    }
    selection: dict[str, list[Any]] = {"best_epoch": [], "best_val_dice": []}
    history: dict[str, Any] = {}
    runs: list[dict[str, int]] = []
    inputs = (cfg.data.shards, cfg.data.synthetic, *(cfg.data.synthetic_folds or []),
              cfg.model.backbone)  # fmt: skip
    # refuses a non-empty out, or one inside an input, up front
    with staged_output(out, overwrite=overwrite, inputs=inputs) as stage:
        for fold, (sets, cases) in enumerate(zip(all_sets, all_cases)):
            for seed in tc.seeds:
                torch.manual_seed(seed)
                np.random.seed(seed)
                model = build_model(cfg.model, sets, tc.patch_size)
                fitted = fit(model, sets, cfg, seed)
                selection["best_epoch"].append(fitted.best_epoch)
                selection["best_val_dice"].append(fitted.best_val_dice)
                history[str(seed) if folds == 1 else f"fold{fold}/{seed}"] = fitted.history
                runs.append({"fold": fold, "seed": seed})
                pred, truth = predict(model, sets.report, tc.batch_size, window)
                run_cases: dict[str, list[float]] = {m: [] for m in METRICS}
                run_class: dict[str, dict[str, list[float]]] = {
                    names[k]: {m: [] for m in METRICS} for k in foreground
                }
                where = {} if folds == 1 else {"fold": fold}
                for case, positions in cases:
                    scores = case_metrics(pred[positions], truth[positions], foreground)
                    for k, values in scores.items():
                        rows.append({**where, "seed": seed, "case": case, "class": names[k],
                                     **values})  # fmt: skip
                        for m in METRICS:
                            run_class[names[k]][m].append(values[m])
                    mean = {m: float(np.mean([s[m] for s in scores.values()])) for m in METRICS}
                    rows.append({**where, "seed": seed, "case": case, "class": "mean", **mean})
                    for m in METRICS:
                        run_cases[m].append(mean[m])
                for m in METRICS:
                    per_run[m].append(float(np.mean(run_cases[m])))
                    case_values[m].extend(run_cases[m])
                    for name in run_class:
                        per_class_run[name][m].append(float(np.mean(run_class[name][m])))
                        class_case_values[name][m].extend(run_class[name][m])
                if len(runs) == 1 and cfg.report.figure_cases:
                    _figure(model, sets, cfg.report.figure_cases, tc.batch_size, stage / FIGURE,
                            window)  # fmt: skip

        with open(stage / PER_CASE, "w", newline="") as f:
            key = ["fold"] if folds > 1 else []
            writer = csv.DictWriter(f, fieldnames=[*key, "seed", "case", "class", *METRICS])
            writer.writeheader()
            writer.writerows(rows)
        (stage / "history.json").write_text(json.dumps(history, indent=1))
        context: dict[str, Any] = {
            "encoder": description,
            "seeds": list(tc.seeds),
            "split_sizes": (
                all_sets[0].split_sizes(cfg.data.eval_split)
                if folds == 1
                else {
                    "rows": len(all_sets[0].train) + len(all_sets[0].val) + len(all_sets[0].report),
                    "folds": folds,
                }  # fmt: skip
            ),
            "training_data": _training_data(cfg, all_sets),
            "report_split": cfg.data.eval_split,
            "selection": {"split": "val", "metric": "mean foreground Dice", **selection},
            "selection_biased": cfg.data.eval_split == "val",
            "cases": cfg.data.cases,
            "num_cases": sum(len(cases) for cases in all_cases),
            "classes": names,
            "scored_classes": [names[k] for k in foreground],
            "image_shape": list(all_sets[0].image_shape),
            "hd95_unit": "pixels",
            # loss, metrics and the monai_* networks come from it: their values follow it
            "monai_version": monai.__version__,
            "epochs": tc.epochs,
        }
        if folds > 1:
            # metrics' values are per run, in this (fold, seed) order
            context.update(folds=_folds_context(cfg, all_sets), runs=runs)
        result = Result(
            task="segment",
            metrics={m: _summary(per_run[m], case_values[m]) for m in METRICS},
            per_class={
                name: {
                    m: _summary(per_class_run[name][m], class_case_values[name][m]) for m in METRICS
                }
                for name in per_class_run
            },
            extra={"per_case": PER_CASE, "figure": FIGURE if cfg.report.figure_cases else None},
            inputs=_inputs(cfg),
            settings={"config": to_dict(cfg), "config_digest": config_digest(cfg)},
            context=context,
        )
        written = write_result(stage, result)
    return written


def _figure(
    model: Any, sets: SegmentSets, count: int, batch_size: int, path: Path, window: Window | None
) -> None:
    """Evenly spaced validation cases, preferring ones with foreground."""
    pred, truth = predict(model, sets.val, batch_size, window)
    candidates = [i for i in range(len(truth)) if truth[i].any()] or list(range(len(truth)))
    chosen = [
        candidates[int(j)] for j in np.linspace(0, len(candidates) - 1, min(count, len(candidates)))
    ]
    images = np.stack([sets.val[i]["image"].numpy() for i in chosen])
    titles = [f"val index {int(sets.val.indices[i])}" for i in chosen]
    overlay_figure(images, truth[chosen], pred[chosen], sets.class_names, path, titles=titles)
