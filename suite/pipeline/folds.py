"""Cross-validated runs: the per-fold runs below a run with a ``folds`` stage, and their merge.

A run whose stages list ``folds`` runs ``ingest`` and ``folds`` once, then every later stage but
``report`` once per fold, as a run of its own in ``<run>/fold<k>/`` whose ingested set is the
fold's set (``ingest.shards``), so each fold trains its own generator on its own training rows
and samples from them, as seed 002 fine-tunes a ControlNet per fold. The fold runs are ordinary
runs: their stage records, digests and outputs are those of any run. ``report`` then merges each
evaluation row over the folds (:func:`merge_fold_results`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from suite.data.folds import fold_name
from suite.pipeline.config import FoldsStage, PipelineConfig

#: stages a cross-validated run runs once, in its own folder
ONCE = ("ingest", "folds", "report")
EVALUATIONS = ("eval_segment", "eval_classify")
FOLDS_DIR = "folds"  # <run>/folds/fold<k>: the folds stage's sets


def folds_of(cfg: PipelineConfig) -> FoldsStage | None:
    """The folds section of a cross-validated run, else None."""
    return (cfg.folds or FoldsStage()) if "folds" in cfg.stages else None


def per_fold_stages(cfg: PipelineConfig) -> list[str]:
    return [s for s in cfg.stages if s not in ONCE] if folds_of(cfg) else []


def fold_run(cfg: PipelineConfig, run_dir: Path, fold: int) -> PipelineConfig:
    """Fold ``fold``'s run: ``<run>/fold<k>/``, on the fold's set, with the per-fold stages."""
    return replace(
        cfg,
        run=replace(cfg.run, name=fold_name(fold), out_dir=run_dir),
        stages=["ingest", *per_fold_stages(cfg)],
        ingest=replace(cfg.ingest, source=None, shards=run_dir / FOLDS_DIR / fold_name(fold)),
        folds=None,
    )


def merge_fold_results(cfg: PipelineConfig, run_dir: Path) -> dict[str, str]:
    """``<run>/<stage>/<row>/result.json`` for every evaluation row of the fold runs: the values
    of every fold and seed (mean +- std over them), the per-fold means in ``context.folds``.
    Returns row -> merged result.json."""
    from suite.artifacts.results import read_result
    from suite.pipeline.stages import STAGES, merge_results, slug

    folds = folds_of(cfg)
    assert folds is not None
    merged: dict[str, str] = {}
    for stage in (s for s in EVALUATIONS if s in cfg.stages):
        for row in STAGES[stage].rows(cfg):
            runs = [run_dir / fold_name(k) / stage / slug(row) for k in range(folds.folds)]
            per_fold: list[dict[str, Any]] = []
            for k, folder in enumerate(runs):
                result = read_result(folder)
                means = {m: v.get("mean") for m, v in result.metrics.items() if isinstance(v, dict)}
                per_fold.append({"fold": k, "run": str(folder), "mean": means})
            out = run_dir / stage / slug(row)
            merge_results(runs, out, [fold_name(k) for k in range(folds.folds)],
                          context={"folds": per_fold, "cross_validation": _describe(folds)})  # fmt: skip
            merged[f"{stage}/{row}"] = str(out / "result.json")
    return merged


def _describe(folds: FoldsStage) -> dict[str, Any]:
    return {
        "folds": folds.folds,
        "val_fraction": folds.val_fraction,
        "shuffle_seed": folds.shuffle_seed,
        "by": "group (volume, patient or slab)",
    }
