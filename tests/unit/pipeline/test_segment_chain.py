"""Seed 002's chain in a run: the edges stage, a ControlNet that trains on its hints and samples
from them, and ``eval_segment.variants`` (one row per backbone and training-data variant), checked
at plan time. The chain itself runs end to end in tests/integration/test_recipes.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from suite.config import config_digest, load_config
from suite.errors import ConfigError
from suite.pipeline.config import PipelineConfig
from suite.pipeline.runner import plan
from suite.pipeline.stages import STAGES, Context

REPO = Path(__file__).resolve().parents[3]
BUSI = REPO / "configs" / "papers" / "diffboost" / "run_busi.yaml"
QUICKSTART = REPO / "configs" / "quickstart.yaml"


def load(tmp_path: Path, *overrides: str, path: Path = BUSI) -> PipelineConfig:
    return load_config(path, [f"run.out_dir={tmp_path}", *overrides], schema=PipelineConfig)


def test_the_controlnet_trains_on_the_edges_stage_and_samples_from_it(tmp_path: Path) -> None:
    cfg = load(tmp_path)
    _, steps = plan(cfg)
    assert list(dict.fromkeys(s.stage for s in steps)) == cfg.stages
    assert STAGES["generator"].needs(cfg) == ["ingest", "edges"]
    assert STAGES["sample"].needs(cfg) == ["generator", "edges"]
    assert STAGES["edges"].needs(cfg) == ["ingest"]
    # a ControlNet given its own hints reads no edges stage
    own = load(tmp_path, f"generator.model.hints={tmp_path}", "sample.conditions=real")
    assert STAGES["generator"].needs(own) == ["ingest"]
    assert STAGES["sample"].needs(own) == ["generator", "ingest"]


def test_an_edge_guided_run_without_its_edges_stage_is_refused(tmp_path: Path) -> None:
    stages = "stages=[ingest,folds,generator,sample,eval_segment,report]"
    with pytest.raises(ConfigError) as err:
        plan(load(tmp_path, stages))
    assert "generator.model.hints is not set and the run has no edges stage" in str(err.value)
    assert "add edges to stages" in err.value.fix
    with pytest.raises(ConfigError) as err:
        plan(load(tmp_path, stages, f"generator.model.hints={tmp_path}"))
    assert "sample.conditions=edges" in str(err.value) and "add edges" in err.value.fix


def test_bad_canny_thresholds_are_refused_at_plan_time(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        plan(load(tmp_path, "edges.canny_low=0.5", "edges.canny_high=0.2"))
    assert "edges: canny_low=0.5 and canny_high=0.2" in str(err.value)
    assert "edges.canny_low <= edges.canny_high" in err.value.fix


def test_each_variant_is_a_row_with_its_train_overlay(tmp_path: Path) -> None:
    cfg = load(tmp_path)
    rows = cfg.eval_segment.rows()
    assert rows == ["none-baseline", "none-augment", "none-synthetic", "none-merging"]
    run_dir = tmp_path / cfg.run.name
    for stage_output in ("ingest", "sample"):
        (run_dir / stage_output).mkdir(parents=True)
    stage, ctx = STAGES["eval_segment"], Context(cfg, run_dir)
    assert "sample" in stage.needs(cfg)
    built = {row: stage.build(ctx, row, 3) for row in rows}
    assert built["none-baseline"].train.training_data == "real"
    assert built["none-baseline"].data.synthetic is None
    assert len(built["none-augment"].train.augment) == 8
    merging = built["none-merging"]
    assert (merging.train.training_data, merging.train.alpha) == ("merging", 0.6)
    assert merging.train.merge_patch == 64  # the config's train section, under the overlay
    assert merging.data.synthetic == run_dir / "sample"
    assert merging.model.encoder == "monai_attention_unet"
    assert {c.run.name for c in built.values()} == set(rows)


def test_a_variant_with_an_unknown_key_or_a_given_synthetic_set_is_refused(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError) as err:
        plan(load(tmp_path, "eval_segment.variants.merging.alpah=0.4"))
    assert "alpah" in str(err.value) and "eval_segment.variants.none-merging" in str(err.value)
    with pytest.raises(ConfigError) as err:
        plan(load(tmp_path, "eval_segment.variants.merging=0.6"))
    assert "'eval_segment.variants.merging' = 0.6 (float) has the wrong type" in str(err.value)
    with pytest.raises(ConfigError) as err:
        plan(load(tmp_path, f"eval_segment.config.data.synthetic={tmp_path}"))
    assert "eval_segment.config.data.synthetic is set" in str(err.value)


def test_the_new_sections_leave_existing_run_digests_alone(tmp_path: Path) -> None:
    """edges and eval_segment.variants are new: at their defaults they change no digest of a
    run config, nor any stage digest of a run without them."""
    cfg = load(tmp_path, path=QUICKSTART)
    assert cfg.edges is None and cfg.eval_segment.variants is None
    assert "edges" not in PipelineConfig().stages
    settings = STAGES["eval_segment"].settings(cfg)
    assert "variants" not in settings and settings["backbones"] == ["none", "synthetic", "real"]
    with_edges = load(tmp_path, "edges.canny_sigma=2.0", path=QUICKSTART)
    assert config_digest(with_edges) != config_digest(cfg)
