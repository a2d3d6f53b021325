"""Cross-validated runs (suite/pipeline/folds.py): how a run with a ``folds`` stage plans its fold
runs, and how ``report`` merges their rows. The runs themselves (here and on SLURM) are in
tests/integration/test_cross_validated_run.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from suite.artifacts.results import Result, read_result, write_result
from suite.config import load_config
from suite.errors import ConfigError
from suite.pipeline.config import PipelineConfig
from suite.pipeline.folds import fold_run, merge_fold_results, per_fold_stages
from suite.pipeline.runner import plan

REPO = Path(__file__).resolve().parents[3]
BUSI = REPO / "configs" / "papers" / "diffboost" / "run_busi.yaml"
PER_FOLD = ["ingest", "edges", "generator", "sample", "eval_segment"]


def load(tmp_path: Path, *overrides: str) -> PipelineConfig:
    return load_config(BUSI, [f"run.out_dir={tmp_path}", *overrides], schema=PipelineConfig)


def test_the_stages_after_folds_are_planned_once_per_fold(tmp_path: Path) -> None:
    cfg = load(tmp_path)
    assert per_fold_stages(cfg) == PER_FOLD[1:]
    _, steps = plan(cfg)
    labels = [s.label for s in steps]
    folds = [f"fold{k}/{s}" for k in range(3) for s in PER_FOLD]
    assert labels == ["ingest", "folds", *folds, "report"]
    child = fold_run(cfg, tmp_path / cfg.run.name, 1)
    assert child.run.out_dir == tmp_path / cfg.run.name and child.run.name == "fold1"
    assert child.ingest.shards == tmp_path / cfg.run.name / "folds" / "fold1"
    assert child.ingest.source is None and child.folds is None
    assert child.stages == PER_FOLD


def test_fold_digests_follow_the_folds_stage(tmp_path: Path) -> None:
    """A fold run's stages cover the folds stage's digest: other folds are other stages."""
    _, steps = plan(load(tmp_path))
    other = {s.label: s.digest for s in plan(load(tmp_path, "folds.val_fraction=0.3"))[1]}
    for step in steps:
        same = step.stage == "ingest" and step.fold is None
        assert (other[step.label] == step.digest) is same, step.label
    # each fold's stages are their own
    by_fold = {s.fold: s.digest for s in steps if s.stage == "generator"}
    assert len(set(by_fold.values())) == 3


def test_fold_keeps_one_folds_steps(tmp_path: Path) -> None:
    _, steps = plan(load(tmp_path), fold=2)
    assert [s.label for s in steps] == [f"fold2/{s}" for s in PER_FOLD]
    # with --fold, --only and --until name stages of the fold's run (what a SLURM job runs)
    _, only = plan(load(tmp_path), only="generator", fold=0)
    assert [s.label for s in only] == ["fold0/generator"]
    _, ingest = plan(load(tmp_path), only="ingest", fold=1)
    assert [s.label for s in ingest] == ["fold1/ingest"]
    _, until = plan(load(tmp_path), until="edges", fold=1)
    assert [s.label for s in until] == ["fold1/ingest", "fold1/edges"]
    with pytest.raises(ConfigError) as err:
        plan(load(tmp_path), only="folds", fold=0)
    assert "stage 'folds' is not a stage of a fold's run" in str(err.value)
    assert err.value.fix.startswith("with --fold: ingest, edges")
    _, every = plan(load(tmp_path), only="eval_segment")
    assert [s.label for s in every] == [f"fold{k}/{s}" for k in range(3)
                                        for s in ("ingest", "eval_segment")]  # fmt: skip
    _, until = plan(load(tmp_path), until="folds")
    assert [s.label for s in until] == ["ingest", "folds"]


def test_a_fold_the_run_does_not_have_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        plan(load(tmp_path), fold=3)
    assert "--fold 3: the run has no such fold" in str(err.value)
    assert err.value.fix == "pass --fold 0 to 2"
    quickstart = load_config(
        REPO / "configs" / "quickstart.yaml", [f"run.out_dir={tmp_path}"], schema=PipelineConfig
    )
    with pytest.raises(ConfigError) as err:
        plan(quickstart, fold=0)
    assert "it has no folds stage" in str(err.value) and err.value.fix == "drop --fold"


def test_bad_folds_settings_are_refused_at_plan_time(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        plan(load(tmp_path, "folds.folds=1"))
    assert "folds.folds 1: cross-validation needs at least 2 folds" in str(err.value)


def _result(dice: list[float], fold: int) -> Result:
    return Result(
        task="segment",
        metrics={"dice": {"mean": sum(dice) / len(dice), "std": 0.0, "values": dice}},
        per_class={"lesion": {"dice": {"mean": dice[0], "std": 0.0, "values": dice}}},
        context={"fold_marker": fold},
    )


def test_report_merges_each_row_over_the_folds(tmp_path: Path) -> None:
    cfg = load(tmp_path, "folds.folds=2")
    run_dir = tmp_path / cfg.run.name
    values = {0: [0.5, 0.7], 1: [0.9, 0.3]}  # two seeds per fold
    for row in ("none-baseline", "none-augment", "none-synthetic", "none-merging"):
        for k, dice in values.items():
            write_result(run_dir / f"fold{k}" / "eval_segment" / row, _result(dice, k))
    merged = merge_fold_results(cfg, run_dir)
    assert sorted(merged) == sorted(f"eval_segment/{r}" for r in
                                    ("none-baseline", "none-augment", "none-synthetic",
                                     "none-merging"))  # fmt: skip
    result = read_result(run_dir / "eval_segment" / "none-merging")
    assert result.metrics["dice"]["values"] == [0.5, 0.7, 0.9, 0.3]
    assert result.metrics["dice"]["mean"] == pytest.approx(0.6)
    assert result.per_class["lesion"]["dice"]["values"] == [0.5, 0.7, 0.9, 0.3]
    folds = result.context["folds"]
    assert [f["fold"] for f in folds] == [0, 1]
    assert [f["mean"]["dice"] for f in folds] == [pytest.approx(0.6), pytest.approx(0.6)]
    assert result.context["cross_validation"]["folds"] == 2
