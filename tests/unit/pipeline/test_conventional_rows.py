"""Seed 004's "+ conventional augmentation" rows: ``eval_classify.conventional.backbones``
evaluates those backbones again with the augment stage's copies added to the training split, by
the same rule as the synthetic rows, and a rule that asks for copies nobody makes is refused at
plan time."""

from __future__ import annotations

from pathlib import Path

import pytest

from suite.config import load_config
from suite.errors import ConfigError
from suite.pipeline.config import PipelineConfig
from suite.pipeline.runner import plan
from suite.pipeline.stages import STAGES, Context

REPO = Path(__file__).resolve().parents[3]
SMALL = REPO / "configs" / "papers" / "ort-thesis" / "small.yaml"
SMALL_ACGAN = REPO / "configs" / "papers" / "medcls" / "small_acgan.yaml"


def load(tmp_path: Path, *overrides: str, path: Path = SMALL) -> PipelineConfig:
    return load_config(path, [f"run.out_dir={tmp_path}", *overrides], schema=PipelineConfig)


def test_a_conventional_row_adds_the_augment_stages_copies_by_the_synthetic_rule(
    tmp_path: Path,
) -> None:
    cfg = load(tmp_path)
    run_dir = tmp_path / cfg.run.name
    for stage_output in ("ingest", "sample/synthetic", "augment"):
        (run_dir / stage_output).mkdir(parents=True)
    stage = STAGES["eval_classify"]
    assert cfg.eval_classify.rows() == [
        "imagenet", "imagenet+synthetic-aug", "imagenet+conventional-aug",
    ]  # fmt: skip
    assert "augment" in stage.needs(cfg) and "sample" in stage.needs(cfg)
    ctx = Context(cfg, run_dir)
    conventional = stage.build(ctx, "imagenet+conventional-aug", 0)
    synthetic = stage.build(ctx, "imagenet+synthetic-aug", 0)
    assert conventional.data.synthetic.shards == run_dir / "augment"
    assert synthetic.data.synthetic.shards == run_dir / "sample" / "synthetic"
    for row in (conventional, synthetic):
        assert row.data.synthetic.mode == "double" and row.data.synthetic.classes == ["Shirt"]
        assert row.data.shards == run_dir / "ingest" and row.backbone.kind == "imagenet"


def test_the_augment_stage_plans_before_the_evaluation(tmp_path: Path) -> None:
    _, steps = plan(load(tmp_path))
    names = [s.stage for s in steps]
    assert names.index("ingest") < names.index("augment") < names.index("eval_classify")


def test_copies_of_other_classes_than_the_rule_doubles_are_refused(tmp_path: Path) -> None:
    cfg = load(tmp_path, "augment.classes=[Pullover]")
    with pytest.raises(ConfigError, match=r"doubles \['Shirt'\], and the augment stage copies"):
        plan(cfg)
    assert not (tmp_path / cfg.run.name).exists()


def test_a_per_class_rule_must_name_copied_classes(tmp_path: Path) -> None:
    cfg = load(tmp_path, "eval_classify.synthetic.mode=per_class",
               "eval_classify.synthetic.per_class={Coat: 10}")  # fmt: skip
    with pytest.raises(ConfigError, match=r"per_class names \['Coat'\]"):
        plan(cfg)


def test_a_label_fraction_below_one_is_refused(tmp_path: Path) -> None:
    cfg = load(tmp_path, "eval_classify.config.data.label_fraction=0.1")
    with pytest.raises(ConfigError, match="label_fraction below 1"):
        plan(cfg)


def test_a_run_without_the_augment_stage_is_refused(tmp_path: Path) -> None:
    stages = "stages=[ingest,cluster,generator,sample,eval_classify]"
    with pytest.raises(ConfigError, match="reads the output of stage augment"):
        plan(load(tmp_path, stages))


def test_runs_without_conventional_rows_keep_their_digests(tmp_path: Path) -> None:
    """Runs planned before the augment stage and its rows existed are not refused as changed."""
    stage = STAGES["eval_classify"]
    before = load(tmp_path, path=SMALL_ACGAN)
    assert "conventional" not in stage.settings(before)
    assert "augment" not in stage.needs(before)
    assert stage.settings(load(tmp_path))["conventional"] == {"backbones": ["imagenet"]}


def test_the_augment_stage_is_opt_in(tmp_path: Path) -> None:
    """A run that lists no stages (the quickstart's default) gets no augment stage, whose
    default classes would otherwise need a labelled set."""
    from suite.config import digest_body

    assert "augment" not in PipelineConfig().stages
    cfg = load(tmp_path, path=REPO / "configs" / "quickstart.yaml")
    assert cfg.augment is None and "augment" not in digest_body(cfg)
