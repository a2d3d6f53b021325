"""`sbatch slurm/ingest.sbatch ...` on the real local SLURM writes a shard set that verifies."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from suite.data.verify import verify_shard_set
from tests.integration.slurm_jobs import JOB_TIMEOUT_S, job_state, run
from tests.unit.data.helpers import make_class_folders

pytestmark = pytest.mark.slurm
REPO = Path(__file__).resolve().parents[2]


def test_ingest_sbatch(slurm: dict[str, str], tmp_path: Path) -> None:
    src = make_class_folders(tmp_path / "src", per_class=6)
    out = tmp_path / "shards"
    venv = Path(sys.executable).parent.parent
    proc = run(
        ["sbatch", "--parsable", "--wait", f"--partition={slurm['partition']}", f"--chdir={tmp_path}",
         "--mem-per-cpu=1G", "--time=5", f"--export=ALL,SYNMED_VENV={venv}",
         str(REPO / "slurm" / "ingest.sbatch"), str(src), "--out", str(out), "--format", "folder",
         "--image-size", "16"],
        timeout=JOB_TIMEOUT_S + 60,
    )  # fmt: skip
    job_id = proc.stdout.strip().split(";")[0]
    log = tmp_path / f"synmed-ingest-{job_id}.out"
    assert proc.returncode == 0, f"{proc.stderr}\n{log.read_text() if log.exists() else ''}"
    assert job_state(job_id) == "COMPLETED"
    report = verify_shard_set(out)
    assert report.count == 12 and report.image_shape == (1, 16, 16)
    text = log.read_text()
    assert f"job {job_id}" in text and os.fspath(out) in text  # the log says what ran and where


def test_ingest_sbatch_bad_input_fails_the_job(slurm: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    venv = Path(sys.executable).parent.parent
    proc = run(
        ["sbatch", "--parsable", "--wait", f"--partition={slurm['partition']}", f"--chdir={tmp_path}",
         "--mem-per-cpu=1G", "--time=5", f"--export=ALL,SYNMED_VENV={venv}",
         str(REPO / "slurm" / "ingest.sbatch"), str(tmp_path / "empty"), "--out", str(tmp_path / "o"),
         "--format", "folder"],
        timeout=JOB_TIMEOUT_S + 60,
    )  # fmt: skip
    job_id = proc.stdout.strip().split(";")[0]
    assert proc.returncode != 0
    assert job_state(job_id) == "FAILED"
    log = (tmp_path / f"synmed-ingest-{job_id}.out").read_text()
    assert "has no class subfolders" in log and "fix:" in log
    assert not (tmp_path / "o").exists()
