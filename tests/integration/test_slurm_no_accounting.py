"""`synmed submit --wait` and `synmed jobs` on a real SLURM without accounting: scripts/netns-slurm.sh
runs no slurmdbd (AccountingStorageType=accounting_storage/none), so sacct fails there, and the state
and exit code of each job must come from the controller. The loopback cluster is not touched."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.helpers import ENV, REPO
from tests.integration.slurm_jobs import run

pytestmark = pytest.mark.slurm
TINY = str(REPO / "configs" / "generator" / "tiny_lucidrains.yaml")


def rows(listing: str) -> dict[str, list[str]]:
    """The jobs table in `synmed jobs` (or `submit --wait`) output -> {job id: its columns}."""
    lines = listing.splitlines()
    header = next((i for i, line in enumerate(lines) if line.startswith("JOBID ")), None)
    assert header is not None, listing
    assert lines[header].split() == ["JOBID", "STAGE", "STATE", "EXIT", "RUN", "LOG"], listing
    return {line.split()[0]: line.split() for line in lines[header + 1 :]}


def test_submit_wait_and_jobs_report_state_and_exit_code_without_accounting(
    netns_slurm: dict[str, object], tmp_path: Path, mni16: Path
) -> None:
    client = [*netns_slurm["exec"], sys.executable, "-m", "suite"]
    probe = run([*netns_slurm["exec"], "sacct", "-n", "-X", "-j", "1"])
    assert probe.returncode != 0 and "accounting storage is disabled" in probe.stderr, probe

    def submit(name: str, *overrides: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*client, "submit", "train-generator", TINY, f"data.shards={mni16}",
             f"run.out_dir={tmp_path}", f"run.name={name}", *overrides, "--cpus-per-task", "1",
             "--mem-gb", "1", "--partition", str(netns_slurm["partition"]), "--time", "5", "--wait"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
        )  # fmt: skip

    # both at once, one per node: the wait for the first must not depend on the second
    good = submit("good", "train.max_steps=2")
    bad = submit("bad", "train.max_steps=40", "train.lr=1.0e+12", "train.max_grad_norm=null")
    good_out, good_err = good.communicate(timeout=300)
    bad_out, bad_err = bad.communicate(timeout=300)

    assert good.returncode == 0, good_out + good_err
    good_id = good_out.split("as job ")[1].split(";")[0]
    assert rows(good_out)[good_id][2:4] == ["COMPLETED", "0:0"], good_out
    assert json.loads((tmp_path / "good" / "summary.json").read_text())["steps"] == 2

    assert bad.returncode == 1, bad_out + bad_err
    bad_id = bad_out.split("as job ")[1].split(";")[0]
    log = bad_err.split("log: ")[1].strip()
    assert f"error: job {bad_id} ended FAILED" in bad_err
    assert rows(bad_out)[bad_id][2:4] == ["FAILED", "1:0"], bad_out
    assert "the training loss became" in Path(log).read_text()

    # a record of a job this controller never had (as one it dropped after MinJobAge would be)
    records = (tmp_path / "jobs.jsonl").read_text().splitlines()
    gone = {**json.loads(records[0]), "job_id": "999999"}
    with open(tmp_path / "jobs.jsonl", "a") as f:
        f.write(json.dumps(gone) + "\n")
    listing = subprocess.run([*client, "jobs", "--runs", str(tmp_path)], capture_output=True,
                             text=True, timeout=60, env=ENV)  # fmt: skip
    assert listing.returncode == 0, listing.stderr
    table = rows(listing.stdout)
    assert table[good_id][2:4] == ["COMPLETED", "0:0"]
    assert table[bad_id][2:4] == ["FAILED", "1:0"] and table[bad_id][5] == log
    assert table["999999"][2:4] == ["PURGED", "-"]
