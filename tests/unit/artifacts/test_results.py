"""The evaluation-result schema: round trip, version check, the one mean ± std."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from suite.artifacts.results import (
    RESULT_SCHEMA,
    RESULT_VERSION,
    InputRef,
    MeanStd,
    Result,
    mean_std,
    read_result,
    shard_input,
    summarize,
    write_result,
)
from suite.errors import DataError
from tests.unit.data.helpers import make_shard_set


def _result(tmp_path: Path) -> Result:
    return Result(
        task="classify",
        metrics={"knn.accuracy": summarize([0.5, 0.7, float("nan")]), "n": 3},
        per_class={"knn": {"a": {"f1": summarize([0.25, 0.5])}}},
        context={"seeds": [0, 1, 2]},
        inputs={
            "shards": shard_input(make_shard_set(tmp_path / "set", n=6)),
            "backbone": InputRef("random:resnet18:seed0"),
        },
        settings={"config": {"k": 20}, "config_digest": "d" * 64},
        extra={"confusion": {"knn": {"total": [[1, 0], [0, 1]]}}},
    )


def test_round_trip_keeps_every_field_and_nulls_nan(tmp_path: Path) -> None:
    result = _result(tmp_path)
    written = write_result(tmp_path / "out", result)
    on_disk = json.loads((tmp_path / "out" / "result.json").read_text())
    assert written == on_disk
    assert on_disk["schema"] == RESULT_SCHEMA and on_disk["version"] == RESULT_VERSION
    assert on_disk["evaluator"] == "classify" and on_disk["task"] == "classify"
    assert on_disk["confusion"] == {"knn": {"total": [[1, 0], [0, 1]]}}  # extras at the top level
    assert on_disk["metrics"]["knn.accuracy"]["values"] == [0.5, 0.7, None]  # JSON has no NaN
    assert len(on_disk["inputs"]["shards"]["sha256"]) == 64
    back = read_result(tmp_path / "out")
    assert back.inputs == result.inputs and back.settings == result.settings
    assert back.extra == result.extra and back.context == result.context
    assert back.metrics["knn.accuracy"] == {"mean": 0.6, "std": pytest.approx(0.1414, abs=1e-4),
                                            "values": [0.5, 0.7, None],
                                            "ci95": [pytest.approx(0.6 - 1.27062, abs=1e-4),
                                                     pytest.approx(0.6 + 1.27062, abs=1e-4)]}  # fmt: skip
    assert back.to_json() == written
    assert not list((tmp_path / "out").glob("*.tmp"))  # written through a temporary file


def test_the_self_validation_task_is_the_classify_evaluators(tmp_path: Path) -> None:
    written = write_result(tmp_path, Result(task="self_validate", metrics={}))
    assert written["evaluator"] == "classify"
    with pytest.raises(ValueError, match="unknown evaluation task"):
        write_result(tmp_path, Result(task="detect", metrics={}))


def test_version_and_schema_are_checked_first(tmp_path: Path) -> None:
    file = tmp_path / "result.json"
    body = write_result(tmp_path, _result(tmp_path))
    cases = [
        ({**body, "version": RESULT_VERSION + 1}, "reads version", "upgrade synmed"),
        ({**body, "version": 0}, "unknown result version 0", "re-run the evaluation"),
        ({**body, "version": "1"}, "no integer result version", "re-run"),
        ({**body, "schema": "other"}, "not a synmed evaluation result", "re-run"),
        (
            {k: v for k, v in body.items() if k not in ("schema", "version")},
            "older layout",
            "re-run",
        ),
        ({**body, "evaluator": "segment"}, "written by the classify evaluator", "re-run"),
        ({**body, "metrics": {"x": "high"}}, "metric 'x' is neither", "re-run"),
        ({**body, "inputs": {"x": "path"}}, "inputs are not", "re-run"),
    ]
    for bad, what, fix in cases:
        file.write_text(json.dumps(bad))
        with pytest.raises(DataError, match=what) as err:
            read_result(file)
        assert str(file) in err.value.what and fix in (err.value.fix or "")
    file.write_text("{torn")
    with pytest.raises(DataError, match="cannot be read as JSON"):
        read_result(file)


def test_mean_std_is_the_sample_std_and_zero_for_one_seed() -> None:
    s = mean_std([0.5, 0.7, 0.9])
    assert s.mean == pytest.approx(0.7)
    assert s.std == pytest.approx(np.std([0.5, 0.7, 0.9], ddof=1))
    assert s.values == (0.5, 0.7, 0.9)
    assert mean_std([0.4]) == MeanStd(0.4, 0.0, (0.4,))
    # undefined values (an AUC with a class absent) are kept as None and left out of mean and std
    s = mean_std([0.2, float("nan"), None, 0.4])
    assert s.mean == pytest.approx(0.3) and s.std == pytest.approx(math.sqrt(0.02))
    assert s.values == (0.2, None, None, 0.4)
    assert mean_std([float("nan")]) == MeanStd(None, 0.0, (None,))
    # t(0.975, 1) = 12.706: two values give a wide interval, 12.706 * sqrt(2) / sqrt(2) each side
    assert summarize([1.0, 3.0]) == {"mean": 2.0, "std": pytest.approx(math.sqrt(2)),
                                     "values": [1.0, 3.0],
                                     "ci95": [pytest.approx(2.0 - 12.7062047),
                                              pytest.approx(2.0 + 12.7062047)]}  # fmt: skip
    three = mean_std([0.80, 0.82, 0.84])  # std 0.02, t(0.975, 2) = 4.302653
    assert three.ci95() == (pytest.approx(0.82 - 4.302653 * 0.02 / math.sqrt(3)),
                            pytest.approx(0.82 + 4.302653 * 0.02 / math.sqrt(3)))  # fmt: skip
    assert mean_std([0.4]).ci95() is None and summarize([0.4])["ci95"] is None
    assert mean_std([0.4, None]).ci95() is None  # one finite value: no interval


def test_a_pipeline_merge_over_pretraining_seeds_is_a_result_of_the_schema(tmp_path: Path) -> None:
    from suite.pipeline.stages import merge_seed_results

    runs = []
    for seed, dice in ((0, [0.4, 0.5]), (1, [0.6, None])):
        run = tmp_path / "seeds" / f"seed{seed}"
        write_result(run, Result(task="segment", metrics={"dice": summarize(dice), "n": 2},
                                 inputs={"backbone": InputRef(f"/runs/p{seed}/export", "d")},
                                 extra={"per_case": "per_case.csv"}, context={"seeds": [0, 1]}))  # fmt: skip
        runs.append(run)
    merged = merge_seed_results(runs, tmp_path, [0, 1])
    back = read_result(tmp_path)
    assert back.to_json() == merged and back.task == "segment"
    # every seed's defined values, mean ± sample std over them; one-run numbers are not merged
    assert merged["metrics"] == {"dice": summarize([0.4, 0.5, 0.6])}
    assert back.inputs == {"seed0.backbone": InputRef("/runs/p0/export", "d"),
                           "seed1.backbone": InputRef("/runs/p1/export", "d")}  # fmt: skip
    assert back.extra == {"per_case": "per_case.csv"}
    assert back.context["pretrain_seeds"] == [0, 1] and len(back.context["seed_runs"]) == 2
