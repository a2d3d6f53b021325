"""`sbatch slurm/pretrain_ddpm.sbatch` on the real local SLURM: two nodes train together, and a job
warned of its time limit saves one agreed step, requeues itself and finishes from there."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from suite.train import run_state
from tests.integration.helpers import wait_until
from tests.integration.slurm_jobs import job_state, run

pytestmark = pytest.mark.slurm
REPO = Path(__file__).resolve().parents[2]
SBATCH = str(REPO / "slurm" / "pretrain_ddpm.sbatch")
TINY = str(REPO / "configs" / "generator" / "tiny_lucidrains.yaml")
VENV = Path(sys.executable).parent.parent
# Long enough that the signal at step 5 lands mid-run with a wide margin (95 steps, ~10 s at the
# rig's ~10 steps a second; the signal takes well under 1 s), short enough not to spend time
# training after the requeue.
REQUEUE_STEPS = 100


def sbatch(partition: str, cwd: Path, *args: str, export: str = "") -> str:
    proc = run(
        ["sbatch", "--parsable", f"--partition={partition}", f"--chdir={cwd}", "--nodes=2",
         "--gpus-per-node=0", "--ntasks-per-node=1", "--cpus-per-task=1", "--mem-per-cpu=2G",
         "--time=10", f"--export=ALL,SYNMED_VENV={VENV},OMP_NUM_THREADS=1,TQDM_DISABLE=1{export}",
         SBATCH, *args],
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().split(";")[0]


def squeue_state(job_id: str) -> str:
    proc = run(["squeue", "-h", "-j", job_id, "-o", "%T"])
    return proc.stdout.strip()


def test_two_nodes_train_together(slurm: dict[str, str], tmp_path: Path, mni16: Path) -> None:
    job = sbatch(slurm["partition"], tmp_path, TINY, f"data.shards={mni16}", f"run.out_dir={tmp_path}",
                 "train.record_indices=true")  # fmt: skip
    wait_until(lambda: squeue_state(job) == "", 240, f"job {job} to finish")
    log = (tmp_path / f"synmed-ddpm-{job}.out").read_text()
    assert job_state(job) == "COMPLETED", log
    run_dir = tmp_path / "tiny-lucidrains"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 6
    assert summary["model_equal_across_ranks"] and summary["ema_equal_across_ranks"]
    last = run_state.list_checkpoints(run_dir)[-1]
    assert {p.name for p in last.iterdir()} == {
        "meta.json",
        "state.pt",
        "rng-rank0.pt",
        "rng-rank1.pt",
    }
    seen = [{i for line in (run_dir / f"indices-rank{r}.jsonl").read_text().splitlines()
             for i in json.loads(line)["indices"]} for r in (0, 1)]  # fmt: skip
    assert seen[0] and seen[1] and not seen[0] & seen[1]


def test_one_task_per_node_through_accelerate_launch(
    slurm: dict[str, str], tmp_path: Path, mni16: Path
) -> None:
    job = sbatch(slurm["partition"], tmp_path, TINY, f"data.shards={mni16}", f"run.out_dir={tmp_path}",
                 export=",SYNMED_PROCS_PER_NODE=1")  # fmt: skip
    wait_until(lambda: squeue_state(job) == "", 240, f"job {job} to finish")
    log = (tmp_path / f"synmed-ddpm-{job}.out").read_text()
    assert job_state(job) == "COMPLETED", log
    assert "synmed launch: node 0/2" in log and "synmed launch: node 1/2" in log
    summary = json.loads((tmp_path / "tiny-lucidrains" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["model_equal_across_ranks"]


@pytest.mark.parametrize(
    "export", ["", ",SYNMED_PROCS_PER_NODE=1"], ids=["task-per-gpu", "task-per-node"]
)
def test_time_limit_signal_saves_requeues_and_resumes(
    slurm: dict[str, str], tmp_path: Path, mni16: Path, export: str
) -> None:
    job = sbatch(slurm["partition"], tmp_path, TINY, f"data.shards={mni16}", f"run.out_dir={tmp_path}",
                 f"train.max_steps={REQUEUE_STEPS}", "train.checkpoint_every=1000", "train.sample_every=1000",
                 export=export)  # fmt: skip
    run_dir = tmp_path / "tiny-lucidrains"
    metrics = run_dir / "metrics.jsonl"

    def step() -> int:
        lines = metrics.read_text().splitlines() if metrics.exists() else []
        return json.loads(lines[-1])["step"] if lines else 0

    wait_until(lambda: step() >= 5, 180, "training to reach step 5")
    # What SLURM does --signal seconds before the time limit: SIGUSR2 to the job's tasks.
    assert run(["scancel", "--signal=USR2", job]).returncode == 0
    wait_until(lambda: squeue_state(job) == "", 400, f"job {job} to requeue and finish")
    log = (tmp_path / f"synmed-ddpm-{job}.out").read_text()
    assert job_state(job) == "COMPLETED", log
    assert "caught SIGUSR2" in log and "restart 1" in log
    stopped = int(log.split("stopped at step ")[1].split(";")[0])
    assert 5 <= stopped < REQUEUE_STEPS
    assert (
        f"resumed from {run_dir / 'checkpoints' / run_state.step_dir_name(stopped)} at step {stopped}"
        in log
    )
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == REQUEUE_STEPS and summary["resumed_from"].endswith(
        run_state.step_dir_name(stopped)
    )
    steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
    assert steps == list(range(1, REQUEUE_STEPS + 1))  # every step once: none lost, none repeated


def test_pretrain_ssl_sbatch_on_two_nodes(
    slurm: dict[str, str], tmp_path: Path, mni16: Path
) -> None:
    dino = str(REPO / "configs" / "ssl" / "tiny_dino_vit.yaml")
    proc = run(
        ["sbatch", "--parsable", f"--partition={slurm['partition']}", f"--chdir={tmp_path}",
         "--nodes=2", "--gpus-per-node=0", "--ntasks-per-node=1", "--cpus-per-task=1",
         "--mem-per-cpu=2G", "--time=10",
         f"--export=ALL,SYNMED_VENV={VENV},SYNMED_REPO={REPO},OMP_NUM_THREADS=1,TQDM_DISABLE=1",
         str(REPO / "slurm" / "pretrain_ssl.sbatch"), dino, f"pretrain.sources.real={mni16}",
         f"run.out_dir={tmp_path}", "pretrain.epochs=1"],
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    job = proc.stdout.strip().split(";")[0]
    wait_until(lambda: squeue_state(job) == "", 240, f"job {job} to finish")
    log = (tmp_path / f"synmed-ssl-{job}.out").read_text()
    assert job_state(job) == "COMPLETED", log
    summary = json.loads((tmp_path / "tiny-dino-vit" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["model_equal_across_ranks"]
    assert (tmp_path / "tiny-dino-vit" / "export" / "backbone.safetensors").is_file()
