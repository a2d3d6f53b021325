"""Planning a run: every stage checked first, digests chained, complete stages skipped, changed
ones refused unless --force."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from suite.config import load_config
from suite.errors import ConfigError
from suite.pipeline.config import PipelineConfig
from suite.pipeline.runner import plan, record_path

REPO = Path(__file__).resolve().parents[3]
QUICKSTART = REPO / "configs" / "quickstart.yaml"


def load(tmp_path: Path, *overrides: str) -> PipelineConfig:
    return load_config(QUICKSTART, [f"run.out_dir={tmp_path}", *overrides], schema=PipelineConfig)


def complete(run_dir: Path, stage: str, digest: str) -> None:
    path = record_path(run_dir, stage)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"stage": stage, "digest": digest, "outputs": {}}))


RUN_CONFIGS = [
    p
    for p in sorted(REPO.glob("configs/**/*.yaml"))
    if "stages" in (yaml.safe_load(p.read_text()) or {})
]


@pytest.mark.parametrize("path", RUN_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_run_config_plans(path: Path, tmp_path: Path) -> None:
    overrides = [f"run.out_dir={tmp_path}"]
    if "imagenet" in path.read_text():  # a cluster's local weights file; any file stands in
        (tmp_path / "weights.pth").write_bytes(b"")
        overrides.append(f"pretrain.imagenet_weights={tmp_path / 'weights.pth'}")
    cfg = load_config(path, overrides, schema=PipelineConfig)
    run_dir, steps = plan(cfg)  # checks every stage's config, the evaluations' included
    assert {s.action for s in steps} == {"run"}
    # a cross-validated run plans its per-fold stages once per fold
    assert list(dict.fromkeys(s.stage for s in steps)) == cfg.stages


def test_complete_stages_are_skipped_and_a_change_flows_downstream(tmp_path: Path) -> None:
    run_dir, steps = plan(load(tmp_path))
    assert [s.stage for s in steps][:3] == ["ingest", "generator", "sample"]
    for step in steps[:3]:
        complete(run_dir, step.stage, step.digest)
    _, again = plan(load(tmp_path))
    assert [s.action for s in again[:4]] == ["skip", "skip", "skip", "run"]
    # a change to the generator refuses generator and everything reading it that has run
    with pytest.raises(ConfigError, match="stage generator ran .* with another config"):
        plan(load(tmp_path, "generator.train.max_steps=10"))
    _, forced = plan(load(tmp_path, "generator.train.max_steps=10"), force=True)
    assert forced[1].action == "run" and forced[1].digest != steps[1].digest
    assert forced[2].digest != steps[2].digest  # sample reads the generator
    assert forced[0].digest == steps[0].digest  # ingest does not
    # the seed changes every stage
    _, seeded = plan(load(tmp_path, "run.seed=1", "run.name=other"))
    assert all(a.digest != b.digest for a, b in zip(seeded, steps))


def test_only_and_until_select_stages(tmp_path: Path) -> None:
    _, steps = plan(load(tmp_path), until="sample")
    assert [s.stage for s in steps] == ["ingest", "generator", "sample"]
    _, steps = plan(load(tmp_path), only="pretrain")
    assert [s.stage for s in steps] == ["pretrain"]
    with pytest.raises(ConfigError, match="not in this run's stages"):
        plan(load(tmp_path, "stages=[ingest,generator]"), only="report")


def test_a_stage_whose_input_never_ran_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="stage sample reads the output of stage generator"):
        plan(load(tmp_path, "stages=[sample]"))


def test_evaluation_configs_are_checked_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="epochz"):
        plan(load(tmp_path, "eval_segment.config.train.epochz=3"))
    with pytest.raises(ConfigError, match="not pretrain variants"):
        plan(load(tmp_path, "eval_classify.backbones=[none,xray]"))
    with pytest.raises(ConfigError, match="needs ImageNet weights for resnet18"):
        plan(load(tmp_path, "eval_classify.backbones=[none,imagenet]"))
    with pytest.raises(ConfigError, match="not pretrain variants"):
        plan(load(tmp_path, "eval_segment.backbones=[imagenet]"))  # classification only
    with pytest.raises(ConfigError, match="eval_segment.config.data.shards is set by the run"):
        plan(load(tmp_path, "eval_segment.config.data.shards=/x"))
    with pytest.raises(ConfigError, match="is not a source"):
        plan(load(tmp_path, "pretrain.variants=[xray]"))


def test_two_knn_monitors_are_refused_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="knn_monitor_real is set and so is"):
        plan(load(tmp_path, "pretrain.knn_monitor_real=true", "pretrain.pretrain.knn.shards=/x"))
    plan(load(tmp_path, "pretrain.knn_monitor_real=true"))  # one monitor plans
