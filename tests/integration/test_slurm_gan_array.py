"""`synmed submit train-generator --each-class` on the real local SLURM: a per_class DCGAN as one
array task per class plus a dependent merge job gives the export that the same classes trained
in-process one after another give, weight for weight and sample for sample."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from suite.generative.export import load_generator
from suite.sampling.job import make_plan, sample_rows
from tests.integration.helpers import ENV, REPO, synmed
from tests.unit.data.helpers import make_shard_set

pytestmark = pytest.mark.slurm
TINY = str(REPO / "configs" / "generator" / "tiny_dcgan.yaml")


def popen_synmed(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "suite", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV)  # fmt: skip


def test_a_per_class_array_merges_into_the_in_process_export(
    slurm: dict[str, str], tmp_path: Path
) -> None:
    shards = make_shard_set(tmp_path / "shards", n=12, shard_size=6, classes=("a", "b"))
    common = [TINY, f"data.shards={shards}", "data.split=null", "model.mode=per_class",
              "model.num_classes=2", "train.max_steps=2", "train.batch_size=2"]  # fmt: skip
    array = popen_synmed("submit", "train-generator", *common, f"run.out_dir={tmp_path / 'slurm'}",
                         "--each-class", "--cpus-per-task", "1", "--mem-gb", "2", "--partition",
                         slurm["partition"], "--time", "5", "--wait")  # fmt: skip
    local = synmed(
        "train", "generator", *common, f"run.out_dir={tmp_path / 'local'}", "--each-class"
    )
    out, err = array.communicate(timeout=240)
    assert local.returncode == 0, local.stderr
    assert array.returncode == 0, err + out
    # two array tasks (one per class) and the merge that waited for both
    records = [
        json.loads(line) for line in (tmp_path / "slurm" / "jobs.jsonl").read_text().splitlines()
    ]
    assert [r["stage"] for r in records] == ["train-generator", "train-generator", "merge-classes"]
    array_id = records[0]["job_id"].split("_")[0]
    assert [r["job_id"] for r in records[:2]] == [f"{array_id}_0", f"{array_id}_1"]
    assert records[2]["after"] == array_id and out.count("COMPLETED") == 3

    runs = {where: tmp_path / where / "tiny-dcgan" for where in ("slurm", "local")}
    meta = json.loads((runs["slurm"] / "export" / "synmed-export.json").read_text())
    assert [p["classes"] for p in meta["provenance"]["merged_from"]] == [["a"], ["b"]]
    assert all(len(p["sha256"]) == 64 for p in meta["provenance"]["merged_from"])
    weights = {w: (r / "export" / "generator.safetensors").read_bytes() for w, r in runs.items()}
    assert weights["slurm"] == weights["local"]  # bit-identical: init and data order from (seed, c)

    # what every `synmed sample` worker runs on its rows, on each export as the loader reads it
    images = {}
    for where, run in runs.items():
        model, digest = load_generator(run)
        plan = make_plan(digest, model.class_names, 2, samplers=model.samplers, num_images=None,
                         per_class=3, class_weights=None, shard_size=6, batch_size=4, sampler="gan",
                         steps=1, seed=0, guidance_scale=1.0)  # fmt: skip
        images[where] = sample_rows(model, plan, 0, 6, None, "cpu")
    assert sorted(images["slurm"]["labels"].tolist()) == [0, 0, 0, 1, 1, 1]
    assert set(images["slurm"]) == set(images["local"])
    assert all(np.array_equal(images["slurm"][k], images["local"][k]) for k in images["slurm"])
