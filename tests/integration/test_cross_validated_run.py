"""A cross-validated run (a ``folds`` stage) on the real local SLURM: the fold runs' chains start
after the folds job and run side by side, the report waits for all of them and merges each row
over the folds, and a second submission finds everything complete. The recipes' own
cross-validated runs, in this process, are in tests/integration/test_recipes.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.helpers import REPO, synmed, synmed_here, wait_until
from tests.integration.slurm_jobs import job_state, run

SMALL = REPO / "configs" / "papers" / "diffboost" / "small.yaml"
# the recipe's real-data rows only: ingest, folds, segmentation per fold, the merged report
REAL_ONLY = [
    "stages=[ingest,folds,eval_segment,report]", "folds.folds=2", "ingest.image_size=16",
    "eval_segment.variants={baseline: {training_data: real}}",
    "eval_segment.config.train.epochs=1", "eval_segment.config.model.channels=[8,16]",
]  # fmt: skip
DONE = {"", "UNKNOWN", "PENDING", "RUNNING", "REQUEUED", "COMPLETING"}


@pytest.mark.slurm
def test_folds_run_side_by_side_on_slurm_and_the_report_merges_them(
    slurm: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    resources = [f"slurm.partition={slurm['partition']}", "slurm.cpus_per_task=1",
                 "slurm.time_min=10", "slurm.mem_gb=2"]  # fmt: skip
    args = ["run", str(SMALL), *REAL_ONLY, f"run.out_dir={tmp_path}", *resources, "--on", "slurm"]
    proc = synmed(*args, timeout=120)
    assert proc.returncode == 0, proc.stderr
    submitted = {
        line.split("synmed run: ")[1].split(":")[0]: line
        for line in proc.stdout.splitlines()
        if "submitted as job" in line
    }
    labels = ["ingest", "folds", "fold0/ingest", "fold0/eval_segment", "fold1/ingest",
              "fold1/eval_segment", "report"]  # fmt: skip
    assert list(submitted) == labels, proc.stdout
    ids = {k: v.split("as job ")[1].split()[0] for k, v in submitted.items()}
    # each fold's chain starts after the folds job; the report after both folds' last jobs
    assert f"(after {ids['folds']})" in submitted["fold0/ingest"]
    assert f"(after {ids['folds']})" in submitted["fold1/ingest"]
    assert f"(after {ids['fold0/ingest']})" in submitted["fold0/eval_segment"]
    after = f"{ids['fold0/eval_segment']}:{ids['fold1/eval_segment']}"
    assert f"(after {after})" in submitted["report"]
    wait_until(lambda: job_state(ids["report"], timeout=5) not in DONE, 900,
               "the report job to end", poll=2)  # fmt: skip
    run_dir = tmp_path / "diffboost-small"
    states = {label: job_state(i) for label, i in ids.items()}
    logs = "\n".join(
        f"{p}:\n{p.read_text()[-2000:]}"
        for p in sorted((run_dir / "submitit").rglob("*"))
        if p.suffix in {".out", ".err"}
    )
    assert set(states.values()) == {"COMPLETED"}, (states, logs)
    for k in (0, 1):
        record = json.loads((run_dir / f"fold{k}" / "stages" / "eval_segment.json").read_text())
        assert record["outputs"]["results"]["none-baseline"].startswith(str(run_dir / f"fold{k}"))
    merged = json.loads((run_dir / "eval_segment" / "none-baseline" / "result.json").read_text())
    per_fold = [json.loads((run_dir / f"fold{k}" / "eval_segment" / "none-baseline" /
                            "result.json").read_text()) for k in (0, 1)]  # fmt: skip
    # the merged row holds each fold's value, in fold order
    assert merged["metrics"]["dice"]["values"] == [
        r["metrics"]["dice"]["values"][0] for r in per_fold
    ]
    assert [f["fold"] for f in merged["context"]["folds"]] == [0, 1]
    assert (run_dir / "report" / "report.md").is_file()
    assert run(["squeue", "-h", "-j", ",".join(ids.values())]).stdout.strip() == ""
    again = synmed_here(capsys, *args)
    assert again.returncode == 0 and "submitted as job" not in again.stdout  # all complete
