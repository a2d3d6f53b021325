"""The tiny ControlNet trained on two SLURM nodes through the sbatch script, its ranks in sync and
its export a diffusers ControlNet."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.integration.helpers import wait_until

REPO = Path(__file__).resolve().parents[2]
TINY = str(REPO / "configs/generator/tiny_controlnet.yaml")
SBATCH = str(REPO / "slurm" / "pretrain_ddpm.sbatch")
VENV = Path(sys.executable).parent.parent


@pytest.mark.slurm
def test_two_slurm_nodes_train_a_controlnet_through_the_sbatch_script(
    slurm: dict[str, str], tiny_sd: Path, tmp_path: Path
) -> None:
    from diffusers import ControlNetModel

    from suite.data.edges import write_edge_set
    from tests.integration.slurm_jobs import job_state, run
    from tests.unit.data.helpers import make_shard_set

    shards = make_shard_set(tmp_path / "s", n=8, classes=("a", "b"), size=16, masks=True)
    write_edge_set(shards, tmp_path / "edges", progress=False)
    proc = run(
        ["sbatch", "--parsable", f"--partition={slurm['partition']}", f"--chdir={tmp_path}",
         "--nodes=2", "--gpus-per-node=0", "--ntasks-per-node=1", "--cpus-per-task=1",
         "--mem-per-cpu=2G", "--time=10",
         f"--export=ALL,SYNMED_VENV={VENV},OMP_NUM_THREADS=1,TQDM_DISABLE=1",
         SBATCH, TINY, f"model.base={tiny_sd}", f"data.shards={shards}", "data.split=null",
         f"model.hints={tmp_path / 'edges'}", f"run.out_dir={tmp_path}", "train.batch_size=2"],
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    job = proc.stdout.strip().split(";")[0]
    squeue = ["squeue", "-h", "-j", job, "-o", "%T"]
    wait_until(lambda: run(squeue).stdout.strip() == "", 240, f"job {job} to finish")
    log = (tmp_path / f"synmed-ddpm-{job}.out").read_text()
    assert job_state(job) == "COMPLETED", log
    summary = json.loads((tmp_path / "tiny-controlnet" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["global_batch"] == 4 and summary["steps"] == 4
    assert summary["model_equal_across_ranks"] and summary["ema_equal_across_ranks"]
    exported = ControlNetModel.from_pretrained(
        tmp_path / "tiny-controlnet" / "export" / "controlnet"
    )
    assert exported.config.conditioning_channels == 1
