"""`synmed report` and write_report: staged output, reruns, refusals, the empty-folder error."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from suite.cli import main
from suite.errors import ShardError
from suite.report.cli import write_report
from tests.unit.report import helpers as h


def test_cli_writes_the_report_into_run_dir_report(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(run_dir)]) == 0
    out = run_dir / "report"
    assert f"wrote {out / 'report.md'}" in capsys.readouterr().out
    tables = sorted(p.name for p in (out / "tables").iterdir())
    for stem in ("classification", "segmentation", "generator", "training", "sampling", "clusters"):
        assert f"{stem}.csv" in tables and f"{stem}.tex" in tables
    with open(out / "tables" / "segmentation.csv", newline="") as f:
        row = next(csv.DictReader(f))
    result = json.loads((run_dir / "eval_segment" / "none" / "result.json").read_text())
    assert float(row["dice_mean"]) == result["metrics"]["dice"]["mean"]
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".")]  # no staging left


def test_a_rerun_replaces_the_report_and_ignores_it(run_dir: Path) -> None:
    first = write_report(run_dir)
    (first.parent / "stale.txt").write_text("from an older report")
    second = write_report(run_dir)  # the old report folder is neither input nor refused
    assert second == first and first.is_file()
    assert not (first.parent / "stale.txt").exists()


def test_a_folder_synmed_did_not_write_is_refused_even_with_overwrite(
    run_dir: Path, tmp_path: Path
) -> None:
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep")
    with pytest.raises(ShardError, match="is not empty"):
        write_report(run_dir, other)
    with pytest.raises(ShardError, match="was not written by synmed"):
        write_report(run_dir, other, overwrite=True)
    assert [p.name for p in other.iterdir()] == ["notes.txt"]


def test_a_reported_stage_output_is_never_the_report_folder(run_dir: Path) -> None:
    sample = run_dir / "sample"
    before = sorted(p.name for p in sample.iterdir())
    with pytest.raises(ShardError, match="holds stage outputs"):
        write_report(run_dir, sample, overwrite=True)
    assert sorted(p.name for p in sample.iterdir()) == before


def test_a_failed_report_leaves_nothing_behind(run_dir: Path) -> None:
    write_report(run_dir)
    before = (run_dir / "report" / "report.md").read_text()
    (run_dir / "sample" / "shard-00001.h5").unlink()  # found only when the grid is drawn
    with pytest.raises(ShardError, match="shard-00001.h5 is listed in the manifest but missing"):
        write_report(run_dir)
    assert (run_dir / "report" / "report.md").read_text() == before  # the old report stays
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".")]  # staging removed


def test_an_empty_run_folder_is_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("nothing here")
    assert main(["report", str(empty)]) == 2
    err = capsys.readouterr().err
    assert f"error: {empty} holds no stage outputs to report" in err and "fix: pass" in err
    assert not (empty / "report").exists()


def test_a_single_evaluation_folder_is_a_run_folder_too(tmp_path: Path) -> None:
    h.segment_result(tmp_path / "seg")
    report = write_report(tmp_path / "seg", tmp_path / "rep")
    text = report.read_text()
    assert "| seg | conv random | real | 0,1 | train 106, val 13, test 14 | test |" in text
    assert "](../seg/result.json)" in text
