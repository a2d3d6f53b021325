"""Seed 003's self-validation as a run stage (``eval_self_validate``): refused at plan time unless
an eval_classify row of the run exports fine-tuned classifiers; reads one classifier per
eval_classify seed; its per-seed results merge into one result.json the report renders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from suite.artifacts.results import Result, summarize, write_result
from suite.config import config_digest, digest_body, load_config
from suite.errors import ConfigError
from suite.evaluation.classify.metrics import single_label_scores
from suite.evaluation.classify.self_validation import confusion_json, per_class_json
from suite.pipeline.config import PipelineConfig
from suite.pipeline.runner import plan
from suite.pipeline.stages import STAGES, Context, merge_results
from suite.report.discover import discover
from suite.report.markdown import slugs
from suite.report.tables import classify_tables

REPO = Path(__file__).resolve().parents[3]
SMALL = REPO / "configs" / "papers" / "aiding-diagnosis" / "small.yaml"
QUICKSTART = REPO / "configs" / "quickstart.yaml"


def load(tmp_path: Path, *overrides: str, path: Path = SMALL) -> PipelineConfig:
    return load_config(path, [f"run.out_dir={tmp_path}", *overrides], schema=PipelineConfig)


def refused(cfg: PipelineConfig, tmp_path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        plan(cfg)
    assert not (tmp_path / cfg.run.name).exists()  # refused before anything ran
    return err.value


def test_the_stage_runs_after_eval_classify_and_reads_it_and_the_sampled_set(
    tmp_path: Path,
) -> None:
    cfg = load(tmp_path)
    _, steps = plan(cfg)
    names = [s.stage for s in steps]
    assert names.index("eval_classify") < names.index("eval_self_validate") < names.index("report")
    stage = STAGES["eval_self_validate"]
    assert stage.needs(cfg) == ["eval_classify", "sample"]
    assert stage.kind == "task"  # one process, here or as one SLURM job
    assert "eval_self_validate" in STAGES["report"].needs(cfg)
    # its digest follows its settings and the classifiers it reads
    digest = {s.stage: s.digest for s in steps}
    _, other = plan(load(tmp_path, "eval_self_validate.batch_size=64"))
    _, finetuned = plan(load(tmp_path, "eval_classify.config.finetune.epochs=3"))
    assert {s.stage: s.digest for s in other}["eval_self_validate"] != digest["eval_self_validate"]
    assert {s.stage: s.digest for s in other}["eval_classify"] == digest["eval_classify"]
    changed = {s.stage: s.digest for s in finetuned}
    assert changed["eval_self_validate"] != digest["eval_self_validate"]


def test_a_run_without_the_stage_keeps_its_default_stages_and_digest(tmp_path: Path) -> None:
    assert "eval_self_validate" not in PipelineConfig().stages  # opt-in, as folds and edges
    cfg = load(tmp_path, path=QUICKSTART)
    assert cfg.eval_self_validate is None
    # the section at None is left out of the digest: configs made before it digest as before
    assert "eval_self_validate" not in digest_body(cfg)
    with_section = load(tmp_path, "eval_self_validate.batch_size=128", path=QUICKSTART)
    assert with_section.eval_self_validate is not None
    assert config_digest(with_section) != config_digest(cfg)


def test_a_run_without_eval_classify_is_refused(tmp_path: Path) -> None:
    cfg = load(tmp_path, "stages=[ingest,generator,sample,eval_self_validate]")
    err = refused(cfg, tmp_path)
    assert "the run has no eval_classify stage" in err.what
    assert "add eval_classify to stages" in err.fix


def test_a_classifier_that_is_no_eval_classify_row_is_refused(tmp_path: Path) -> None:
    err = refused(load(tmp_path, "eval_self_validate.classifier=real"), tmp_path)
    assert (
        "eval_self_validate.classifier='real' is not a row of eval_classify.backbones" in err.what
    )
    assert "(imagenet)" in err.what and "one of eval_classify.backbones" in err.fix


def test_classifiers_that_are_not_fine_tuned_are_refused(tmp_path: Path) -> None:
    err = refused(load(tmp_path, "eval_classify.config.protocols=[linear_probe,knn]"), tmp_path)
    assert "protocols (linear_probe, knn) has no finetune" in err.what
    assert err.fix == "add finetune to eval_classify.config.protocols"


def test_classifiers_that_are_not_exported_are_refused(tmp_path: Path) -> None:
    err = refused(load(tmp_path, "eval_classify.config.finetune.export=false"), tmp_path)
    assert "eval_classify.config.finetune.export is false" in err.what
    assert err.fix == "set eval_classify.config.finetune.export=true"


def test_one_classifier_per_eval_classify_seed_where_eval_classify_writes_it(
    tmp_path: Path,
) -> None:
    stage = STAGES["eval_self_validate"]
    run = tmp_path / "run"
    row = run / "eval_classify" / "imagenet"
    cfg = load(tmp_path)
    assert stage.classifiers(Context(cfg, run)) == [  # type: ignore[attr-defined]
        (f"seed{n}", row / "finetune" / f"seed-{n}") for n in (0, 1, 2)
    ]
    # eval_classify's own default seeds when its config names none
    default = load(tmp_path, "eval_classify.config={protocols: [finetune]}")
    assert [lab for lab, _ in stage.classifiers(Context(default, run))] == ["seed0"]  # type: ignore[attr-defined]
    # a row evaluated once per pretraining seed keeps its runs below seeds/seed<P>/
    seeded = load(tmp_path, "pretrain.seeds=[3,4]", "eval_classify.config.seeds=[0]")
    assert stage.classifiers(Context(seeded, run)) == [  # type: ignore[attr-defined]
        ("pretrain3-seed0", row / "seeds" / "seed3" / "finetune" / "seed-0"),
        ("pretrain4-seed0", row / "seeds" / "seed4" / "finetune" / "seed-0"),
    ]


def self_validate_result(folder: Path, seed: int) -> None:
    """A result.json as ``self_validate`` writes it, scored from fixed predictions."""
    names = ["a", "b", "c"]
    y = np.arange(30) % 3
    rng = np.random.default_rng(seed)
    probs = rng.random((30, 3))
    probs[np.arange(30), y] += 0.4 + 0.3 * seed
    s = single_label_scores(y, probs / probs.sum(1, keepdims=True), names)
    write_result(
        folder,
        Result(
            task="self_validate",
            metrics={f"self_validation.{k}": summarize([v]) for k, v in s.metrics.items()},
            per_class={"self_validation": per_class_json(s)},
            extra={"confusion": {"self_validation": confusion_json(s, names)}},
            context={"classifier": str(folder / "export"), "images": 30, "class_names": names},
        ),
    )


def test_the_merged_result_holds_every_seed_and_the_report_shows_it_once(tmp_path: Path) -> None:
    out = tmp_path / "run" / "eval_self_validate"
    runs = [out / "seeds" / f"seed{n}" for n in (0, 1)]
    for n, folder in enumerate(runs):
        self_validate_result(folder, n)
    merged = merge_results(
        runs, out, ["seed0", "seed1"],
        context={"classifier": str(tmp_path / "run" / "eval_classify" / "imagenet"), "seeds": [0, 1]},
    )  # fmt: skip
    f1 = merged["metrics"]["self_validation.f1_macro"]
    assert len(f1["values"]) == 2 and f1["values"][0] != f1["values"][1]
    # per class: each class's precision, recall and F1 over both classifier seeds
    per_class = merged["per_class"]["self_validation"]
    assert set(per_class) == {"a", "b", "c"}
    assert len(per_class["a"]["f1"]["values"]) == 2 and per_class["a"]["f1"]["std"] is not None
    # the confusion matrix summed over the seeds: every image of both runs counted once each
    confusion = merged["confusion"]["self_validation"]
    assert int(np.sum(confusion["total"])) == 60
    assert sorted(confusion["per_seed"]) == ["seed0.0", "seed1.0"]

    found = discover(tmp_path / "run")
    assert [r.folder for r in found.results] == [out]  # the per-seed parts are not listed again
    summary, table = classify_tables(found, slugs(found))
    (row,) = summary.rows
    assert row["protocol"] == "self_validation"
    assert row["backbone"] == "classifier imagenet" and row["seeds"] == "0,1"
    assert len(table.rows) == 3 and {r["class"] for r in table.rows} == {"a", "b", "c"}
