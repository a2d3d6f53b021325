"""Smoke tests against the real local SLURM (``sudo scripts/local-slurm.sh up``).

They check what the rest of the suite relies on: a 2-node batch job with ``srun`` lands one rank on
each (fake) node, submitit jobs run this venv's python and return their results (also with 2 nodes),
and a job that dies without a result is reported FAILED by sacct and raises in submitit.
"""

from __future__ import annotations

import os
import shlex
import socket
import sys
import time
from pathlib import Path

import cloudpickle
import pytest
import submitit
from submitit.core.utils import UncompletedJobError

from tests.integration.slurm_jobs import JOB_TIMEOUT_S, job_state, run

pytestmark = pytest.mark.slurm

# submitit pickles the submitted function by reference (module + name), but this test module is
# imported by pytest from tests/integration, which is not on the job's sys.path. Pickle the functions
# of this module by value instead, so the job needs only cloudpickle, not this file.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _wait(job: submitit.Job, timeout: float = JOB_TIMEOUT_S) -> None:
    """Wait for a submitit job with a deadline (``job.result()`` alone would wait forever).

    Forces a status check every second instead of submitit's back-off (2, 4, 8, 16 s ...).
    """
    deadline = time.monotonic() + timeout
    while not job.done(force_check=True):
        if time.monotonic() > deadline:
            job.cancel(check=False)
            pytest.fail(f"submitit job {job.job_id} not done after {timeout} s (state {job.state})")
        time.sleep(1)


def _executor(tmp_path: Path, partition: str, **params) -> submitit.AutoExecutor:
    # "%j" gives every job its own folder; the controller keeps its state, so ids never repeat.
    executor = submitit.AutoExecutor(
        folder=tmp_path / "%j", cluster="slurm", slurm_python=shlex.quote(sys.executable)
    )
    # 4 min: submitit asks SLURM for SIGUSR2 90 s before the limit, and a loaded machine can take
    # longer than the 30 s a 2 min limit leaves to start Python and install its handler
    defaults = {"timeout_min": 4, "mem_gb": 1, "cpus_per_task": 1, "nodes": 1, "tasks_per_node": 1}
    executor.update_parameters(**{**defaults, **params, "slurm_partition": partition})
    return executor


# --- functions that run inside the jobs (pickled by value, see above) -------------------------------


def sum_and_where(n: int) -> dict[str, object]:
    return {
        "sum": sum(range(n)),
        "job_id": os.environ.get("SLURM_JOB_ID"),
        "node": os.environ.get("SLURMD_NODENAME"),
        "host": socket.gethostname(),
        "python": sys.executable,
    }


def rank_and_node() -> tuple[int, int, str | None]:
    env = submitit.JobEnvironment()
    return env.global_rank, env.num_tasks, os.environ.get("SLURMD_NODENAME")


def die_hard() -> None:
    os._exit(3)  # no result file, no exception: only SLURM can tell what happened


# --- tests ------------------------------------------------------------------------------------------


def test_sbatch_two_nodes_srun(slurm: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "two-nodes.out"
    script = tmp_path / "two-nodes.sh"
    script.write_text(
        "#!/bin/bash\n"
        "#SBATCH --job-name=smoke-2nodes\n"
        "#SBATCH --nodes=2\n"
        "#SBATCH --ntasks-per-node=1\n"
        "#SBATCH --mem=256M\n"
        "#SBATCH --time=2\n"
        f"#SBATCH --output={out}\n"
        "srun bash -c 'echo \"$SLURM_PROCID $SLURMD_NODENAME\"'\n"
    )
    proc = run(
        ["sbatch", "--parsable", "--wait", f"--partition={slurm['partition']}",
         f"--chdir={tmp_path}", str(script)],
        timeout=JOB_TIMEOUT_S + 30,
    )  # fmt: skip
    job_id = proc.stdout.strip().split(";")[0]
    assert proc.returncode == 0, f"sbatch rc {proc.returncode}: {proc.stderr}\n{out.read_text()}"
    lines = sorted(line.split() for line in out.read_text().splitlines() if line.strip())
    assert lines == [["0", "n1"], ["1", "n2"]], out.read_text()
    assert job_state(job_id) == "COMPLETED"


def test_submitit_single_task(slurm: dict[str, str], tmp_path: Path) -> None:
    job = _executor(tmp_path, slurm["partition"]).submit(sum_and_where, 101)
    _wait(job)
    result = job.result()
    assert result["sum"] == 5050
    assert result["job_id"] == job.job_id
    assert result["node"] in {"n1", "n2"}
    assert result["host"] == socket.gethostname()  # the fake nodes all run on this host
    assert result["python"] == sys.executable
    assert job_state(job.job_id) == "COMPLETED"


def test_submitit_two_nodes(slurm: dict[str, str], tmp_path: Path) -> None:
    job = _executor(tmp_path, slurm["partition"], nodes=2, tasks_per_node=1).submit(rank_and_node)
    _wait(job)
    results = sorted(job.results())
    assert [(rank, ntasks) for rank, ntasks, _ in results] == [(0, 2), (1, 2)]
    assert {node for _, _, node in results} == {"n1", "n2"}


def test_submitit_failed_job(slurm: dict[str, str], tmp_path: Path) -> None:
    job = _executor(tmp_path, slurm["partition"]).submit(die_hard)
    # Without a result file submitit waits 15 s for a lagging (NFS) file system; this is local disk.
    # (submitit's own tests set the same class attribute.)
    job._results_timeout_s = 1
    _wait(job)
    with pytest.raises(UncompletedJobError, match="FAILED"):
        job.result()
    assert job_state(job.job_id) == "FAILED"
