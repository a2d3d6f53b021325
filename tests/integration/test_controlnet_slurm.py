"""The tiny ControlNet trained on two SLURM nodes through the sbatch script, its ranks in sync and
its export a diffusers ControlNet."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TINY = str(REPO / "configs/generator/tiny_controlnet.yaml")


@pytest.mark.slurm
def test_two_slurm_nodes_train_a_controlnet_through_the_sbatch_script(
    slurm: dict[str, str], tiny_sd: Path, tmp_path: Path
) -> None:
    from diffusers import ControlNetModel

    from suite.data.edges import write_edge_set
    from tests.integration.slurm_jobs import train_on_two_nodes
    from tests.unit.data.helpers import make_shard_set

    shards = make_shard_set(tmp_path / "s", n=8, classes=("a", "b"), size=16, masks=True)
    write_edge_set(shards, tmp_path / "edges", progress=False)
    train_on_two_nodes(
        slurm["partition"],
        tmp_path,
        [
            TINY,
            f"model.base={tiny_sd}",
            f"data.shards={shards}",
            "data.split=null",
            f"model.hints={tmp_path / 'edges'}",
            f"run.out_dir={tmp_path}",
            "train.batch_size=2",
        ],
    )
    summary = json.loads((tmp_path / "tiny-controlnet" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["global_batch"] == 4 and summary["steps"] == 4
    assert summary["model_equal_across_ranks"] and summary["ema_equal_across_ranks"]
    exported = ControlNetModel.from_pretrained(
        tmp_path / "tiny-controlnet" / "export" / "controlnet"
    )
    assert exported.config.conditioning_channels == 1
