"""Seed 001's "+synthetic" rows in a run: ``eval_classify.synthetic.backbones`` evaluates those
backbones again with the run's sampled set added to the training split (row
``BACKBONE+synthetic-aug``), checked at plan time like every other row."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from suite.config import load_config
from suite.errors import ConfigError
from suite.pipeline.config import EvalBackbonesStage, PipelineConfig
from suite.pipeline.runner import plan
from suite.pipeline.stages import STAGES, Context, slug

REPO = Path(__file__).resolve().parents[3]
SMALL_ACGAN = REPO / "configs" / "papers" / "medcls" / "small_acgan.yaml"
SMALL_REAL = REPO / "configs" / "papers" / "medcls" / "small_real.yaml"


def load(tmp_path: Path, *overrides: str, path: Path = SMALL_ACGAN) -> PipelineConfig:
    return load_config(path, [f"run.out_dir={tmp_path}", *overrides], schema=PipelineConfig)


def test_an_augmented_row_adds_the_runs_sampled_set_to_training_only(tmp_path: Path) -> None:
    cfg = load(tmp_path, "eval_classify.backbones=[imagenet]")
    run_dir = tmp_path / cfg.run.name
    for stage_output in ("ingest", "sample"):  # paths must exist when the config is built
        (run_dir / stage_output).mkdir(parents=True)
    ctx = Context(cfg, run_dir)
    stage = STAGES["eval_classify"]
    assert cfg.eval_classify.rows() == ["imagenet", "imagenet+synthetic-aug"]
    augmented = stage.build(ctx, "imagenet+synthetic-aug", 0)
    assert augmented.data.synthetic.shards == run_dir / "sample"
    assert augmented.data.synthetic.mode == "per_class"
    assert augmented.data.synthetic.per_class["Trouser"] == 150
    assert augmented.data.shards == run_dir / "ingest"  # val and test stay the real splits
    assert augmented.backbone.kind == "imagenet" and augmented.backbone.adapt_channels
    plain = stage.build(ctx, "imagenet", 0)
    assert plain.data.synthetic is None
    # its own folder, apart from a backbone pretrained on synthetic images from ImageNet
    assert slug("imagenet+synthetic-aug") != slug("imagenet+synthetic")


def test_augmented_rows_read_the_sample_stage_unless_given_a_set(tmp_path: Path) -> None:
    stage = STAGES["eval_classify"]
    assert "sample" in stage.needs(load(tmp_path))
    assert "sample" not in stage.needs(load(tmp_path, path=SMALL_REAL))
    given = load(tmp_path, f"eval_classify.synthetic.shards={tmp_path}")
    assert "sample" not in stage.needs(given)
    (tmp_path / "run" / "ingest").mkdir(parents=True)
    ctx = Context(given, tmp_path / "run")
    assert stage.build(ctx, "imagenet+synthetic-aug", 0).data.synthetic.shards == tmp_path


def test_a_run_whose_sampled_set_never_ran_is_refused(tmp_path: Path) -> None:
    cfg = load(tmp_path, "stages=[ingest,eval_classify]")
    with pytest.raises(ConfigError, match="stage eval_classify reads the output of stage sample"):
        plan(cfg)
    assert not (tmp_path / cfg.run.name).exists()


def test_an_augmented_row_of_an_unknown_backbone_is_refused(tmp_path: Path) -> None:
    cfg = load(tmp_path, "eval_classify.synthetic.backbones=[xray]")
    with pytest.raises(ConfigError, match=r"\['xray'\], which are not pretrain variants"):
        plan(cfg)
    assert not (tmp_path / cfg.run.name).exists()


def test_synthetic_rows_and_a_synthetic_set_for_every_row_are_refused_together(
    tmp_path: Path,
) -> None:
    cfg = load(tmp_path, f"eval_classify.config.data.synthetic.shards={tmp_path}")
    with pytest.raises(ConfigError, match="eval_classify.config.data.synthetic is set") as err:
        plan(cfg)
    assert "eval_classify.synthetic" in err.value.fix
    assert not (tmp_path / cfg.run.name).exists()


def test_the_synthetic_settings_are_checked_at_plan_time(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="mode"):
        plan(load(tmp_path, "eval_classify.synthetic.mode=all"))


def test_the_small_recipes_share_their_ingest_and_evaluation(tmp_path: Path) -> None:
    """The rows of one table: every small_*.yaml reads the same real data the same way."""
    # small_simclr.yaml is the SSL table's recipe (docs/results.md), not one of these rows
    paths = sorted(p for p in SMALL_ACGAN.parent.glob("small_*.yaml") if p.stem != "small_simclr")
    assert {p.stem for p in paths} == {"small_real", "small_dcgan", "small_acgan", "small_ddpm"}
    cfgs = [load(tmp_path, path=p) for p in paths]
    for cfg in cfgs[1:]:
        assert cfg.ingest == cfgs[0].ingest
        assert cfg.eval_classify.config == cfgs[0].eval_classify.config
        assert cfg.pretrain.pretrain.backbone == cfgs[0].pretrain.pretrain.backbone
    rows = sorted(row for cfg in cfgs for row in cfg.eval_classify.rows())
    assert rows == ["imagenet"] + ["imagenet+synthetic-aug"] * 3


def test_a_run_without_augmented_rows_keeps_its_digest(tmp_path: Path) -> None:
    """Runs planned before the rows existed are not refused as changed."""
    stage = STAGES["eval_classify"]
    cfg = load(tmp_path, path=SMALL_REAL)
    assert set(stage.settings(cfg)) == {f.name for f in fields(EvalBackbonesStage)}
    assert stage.settings(load(tmp_path))["synthetic"]["backbones"] == ["imagenet"]
