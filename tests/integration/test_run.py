"""`synmed run` end to end on a tiny version of configs/quickstart.yaml: every stage in-process on
real MNI152 slices (the Ray stages join the session's local Ray), again with everything skipped, a
changed stage refused then forced. A run on the real local SLURM, one job per stage, is in tests/integration/test_recipes.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.helpers import REPO, synmed, synmed_here

QUICKSTART = str(REPO / "configs" / "quickstart.yaml")
# the quickstart at a size that runs in about a minute: same stages, same code paths
TINY = [
    "ingest.image_size=16",
    "generator.model.image_size=16", "generator.model.dim=8", "generator.model.dim_mults=[1,2]",
    "generator.model.timesteps=20", "generator.train.max_steps=4", "generator.train.batch_size=8",
    "generator.train.sample_every=4", "generator.train.sample_steps=2",
    "generator.train.ema_update_after_step=0",
    "sample.num_images=24", "sample.shard_size=12", "sample.batch_size=12", "sample.steps=2",
    "pretrain.pretrain.backbone.image_size=16", "pretrain.pretrain.method.local_crop_size=8",
    "pretrain.pretrain.epochs=1", "pretrain.train.batch_size=8",
    "eval_generator.encoders=[random:32]",
    "eval_segment.config.train.epochs=1", "eval_segment.config.train.seeds=[0]",
    "eval_classify.config.protocols=[knn]", "eval_classify.config.seeds=[0]",
]  # fmt: skip


@pytest.mark.usefixtures("joined_ray")
def test_local_run_skips_refuses_and_forces(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["run", QUICKSTART, *TINY, f"run.out_dir={tmp_path}"]
    first = synmed(*args, timeout=900)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    run_dir = tmp_path / "quickstart"
    stages = ["ingest", "generator", "sample", "pretrain", "eval_generator", "eval_segment",
              "eval_classify", "report"]  # fmt: skip
    records = {s: json.loads((run_dir / "stages" / f"{s}.json").read_text()) for s in stages}
    assert (run_dir / "report" / "report.md").is_file() and "report:" in first.stdout
    exports = records["pretrain"]["outputs"]["exports"]
    assert set(exports) == {"synthetic-seed0", "real-seed0"}
    for backbone in ("none", "synthetic", "real"):
        for task in ("eval_segment", "eval_classify"):
            result = json.loads((run_dir / task / backbone / "result.json").read_text())
            assert result["metrics"], (task, backbone)
    fid = json.loads((run_dir / "eval_generator" / "result.json").read_text())
    assert fid["metrics"]["fd_random_32"] >= 0

    # the reruns in this process, where a fresh interpreter's imports would be most of their time
    # (the first run went through a real one)
    again = synmed_here(capsys, *args)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("skipped (complete, same config)") == len(stages)

    changed = synmed_here(capsys, *args, "eval_classify.config.knn.k=3")
    assert changed.returncode == 2 and "stage eval_classify ran" in changed.stderr
    assert "--force" in changed.stderr
    forced = synmed_here(capsys, *args, "eval_classify.config.knn.k=3", "--only", "eval_classify",
                         "--force")  # fmt: skip
    assert forced.returncode == 0, forced.stderr[-3000:]
    after = json.loads((run_dir / "stages" / "eval_classify.json").read_text())
    assert after["digest"] != records["eval_classify"]["digest"]
    report = json.loads((run_dir / "stages" / "report.json").read_text())
    assert report["digest"] == records["report"]["digest"]  # --only: report not re-run
