"""A run folder holding one output of every kind, as `synmed run` lays it out."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.data.helpers import make_shard_set
from tests.unit.report import helpers as h


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    make_shard_set(run / "ingest", n=12)
    h.sampled_set(run / "sample", steps=20)
    h.sampled_set(run / "sample-50", steps=50)
    h.classify_result(run / "eval_classify" / "none")
    h.segment_result(run / "eval_segment" / "none")
    h.generator_result(run / "eval_generator", run / "ingest", run / "sample", 40.0)
    h.generator_result(run / "eval_generator-50", run / "ingest", run / "sample-50", 31.5)
    h.training_run(run / "generator", pretrain=False)
    h.training_run(run / "pretrain" / "real-seed0", pretrain=True)
    h.cluster_output(run / "cluster")
    return run
