"""Discovery of stage outputs in a run folder laid out as `synmed run` lays it out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from suite.artifacts.results import RESULT_SCHEMA, RESULT_VERSION
from suite.errors import DataError
from suite.report.discover import discover, generator_sampling, grid_pairs, is_empty
from tests.unit.data.helpers import make_shard_set
from tests.unit.report import helpers as h

SCHEMA = {"schema": RESULT_SCHEMA, "version": RESULT_VERSION}  # hand-written results of the schema


def test_finds_every_kind_and_reads_the_writers_keys(tmp_path: Path) -> None:
    make_shard_set(tmp_path / "ingest", n=12)
    h.sampled_set(tmp_path / "sample")
    h.classify_result(tmp_path / "eval_classify" / "none")
    h.segment_result(tmp_path / "eval_segment" / "none")
    h.generator_result(tmp_path / "eval_generator", tmp_path / "ingest", tmp_path / "sample", 40.0)
    h.training_run(tmp_path / "generator", pretrain=False)
    h.training_run(tmp_path / "pretrain" / "real-seed0", pretrain=True)
    (tmp_path / "pretrain" / "real-seed0" / "config.yaml").write_text("run:\n  seed: 7\n")
    h.cluster_output(tmp_path / "cluster")
    found = discover(tmp_path)
    assert [r.task for r in found.results] == ["classify", "generator", "segment"]
    assert found.by_task("segment")[0].context["split_sizes"]["test"] == 14
    kinds = {found.name(t.folder): (t.kind, t.seed) for t in found.trainings}
    assert kinds == {"generator": ("generator", None), "pretrain/real-seed0": ("pretrain", 7)}
    knn = [r for r in found.trainings[1].records if "knn_accuracy" in r]
    assert [r["step"] for r in knn] == [20, 40]
    assert [found.name(s.folder) for s in found.samplings] == ["sample"]
    assert found.samplings[0].grid == tmp_path / "sample" / "samples.png"
    assert found.clusters[0].summary["k"] == 3 and found.clusters[0].embedding is not None
    assert {found.name(s.folder): s.source for s in found.shard_sets} == {
        "ingest": "real",
        "sample": "synthetic",
    }
    assert grid_pairs(found) == [(tmp_path / "ingest", tmp_path / "sample")]
    assert generator_sampling(found.by_task("generator")[0], found) == ("ddim", 20)
    assert not is_empty(found)


def test_per_seed_parts_staging_folders_and_other_json_are_left_out(tmp_path: Path) -> None:
    merged = tmp_path / "eval_segment" / "ssl"
    h.segment_result(merged)
    h.segment_result(merged / "seeds" / "seed0", dice=(0.4,))  # a part of the merged result
    h.segment_result(tmp_path / ".report.staging-123" / "x")  # hidden: a staging folder
    h.segment_result(tmp_path / "report" / "copy")  # the report's own folder, excluded
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "result.json").write_text(json.dumps({"metrics": {}}))  # no task
    weird = tmp_path / "future"
    weird.mkdir()
    (weird / "result.json").write_text(json.dumps({**SCHEMA, "task": "detect", "metrics": {}}))
    found = discover(tmp_path, exclude=(tmp_path / "report",))
    assert [found.name(r.folder) for r in found.results] == ["eval_segment/ssl"]
    assert found.skipped == ["future: result of unknown task 'detect'"]


def test_sampling_steps_from_the_summary_when_the_manifest_has_none(tmp_path: Path) -> None:
    make_shard_set(tmp_path / "real", n=6)
    fake = make_shard_set(tmp_path / "fake", n=6, source="synthetic")  # no sampler attrs
    (fake / "sample_summary.json").write_text(json.dumps({"sampler": "ddpm", "sampling_steps": 9}))
    h.generator_result(tmp_path / "fid", tmp_path / "real", fake, 12.0)
    found = discover(tmp_path)
    assert generator_sampling(found.results[0], found) == ("ddpm", 9)


def test_a_torn_last_metrics_line_is_dropped_an_earlier_bad_line_is_an_error(
    tmp_path: Path,
) -> None:
    run = tmp_path / "gen"
    h.training_run(run, pretrain=False)
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 60, "lo')  # killed while appending
    assert [r["step"] for r in discover(tmp_path).trainings[0].records][-1] == 50
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("\n".join(["{oops", *lines]) + "\n")
    with pytest.raises(DataError, match=r"metrics.jsonl line 1 is not JSON") as err:
        discover(tmp_path)
    assert err.value.fix


def test_bad_result_files_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "result.json").write_text("{not json")
    with pytest.raises(DataError, match=r"a/result.json cannot be read as JSON"):
        discover(tmp_path)
    (tmp_path / "a" / "result.json").write_text(json.dumps({**SCHEMA, "task": "segment"}))
    with pytest.raises(DataError, match=r"has task 'segment' but no metrics object"):
        discover(tmp_path)
    # a result of the layout before the schema is refused with the fix, not misread
    (tmp_path / "a" / "result.json").write_text(json.dumps({"task": "segment", "metrics": {}}))
    with pytest.raises(
        DataError, match=r"a/result.json is an evaluation result of an older layout"
    ):
        discover(tmp_path)


def test_a_missing_folder_and_a_folder_with_nothing_to_report(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist") as err:
        discover(tmp_path / "nope")
    assert "pass a folder" in (err.value.fix or "")
    make_shard_set(tmp_path / "ingest", n=6)  # a lone real set: nothing to compare it with
    found = discover(tmp_path)
    assert len(found.shard_sets) == 1 and is_empty(found)
