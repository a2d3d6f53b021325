"""`evaluate segment` with data.folds=K: every fold x seed, by group, the folds `synmed data folds`
writes, per-fold synthetic sets, and one clear error per bad setting."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from suite.cli import main as synmed_main
from suite.data.dataset import ShardDataset
from suite.data.folds import fold_groups, write_fold_sets
from suite.errors import ConfigError, DataError, SynmedError
from suite.evaluation.segment.config import load_segment_config
from suite.evaluation.segment.run import evaluate_segmentation
from tests.unit.data.helpers import make_pairs, make_shard_set, make_volume_set

TINY = ["train.epochs=1", "train.batch_size=4", "model.channels=[4, 8]", "train.merge_patch=4",
        "report.figure_cases=0"]  # fmt: skip


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_three_folds_by_volume_score_every_volume_once(tmp_path: Path) -> None:
    real = make_volume_set(tmp_path / "real", volumes=6, per_volume=2)
    cfg = load_segment_config(None, [f"data.shards={real}", "data.folds=3", "data.cases=group",
                                     "data.fold_val_fraction=0.25", "train.seeds=[0, 1]",
                                     *TINY, "report.figure_cases=1"])  # fmt: skip
    result = evaluate_segmentation(cfg, tmp_path / "out")
    ctx = result["context"]
    assert len(result["metrics"]["dice"]["values"]) == 6  # 3 folds x 2 seeds
    assert ctx["runs"] == [{"fold": k, "seed": s} for k in range(3) for s in (0, 1)]
    assert ctx["split_sizes"] == {"rows": 12, "folds": 3}
    assert ctx["num_cases"] == 6  # each volume is a test case in exactly one fold
    groups = ShardDataset(real).read_column("group")
    written = write_fold_sets(real, tmp_path / "folds", folds=3, val_fraction=0.25)
    for k, fold in enumerate(ctx["folds"]["per_fold"]):
        assert fold["groups"] == fold_groups(groups, 3, k, 0.25)  # the `synmed data folds` cut
        assert {n: fold["split_sizes"][n] for n in ("train", "val", "test")} == {
            n: written["per_fold"][k][n]["count"] for n in ("train", "val", "test")
        }
    rows = _rows(tmp_path / "out" / "per_case.csv")
    assert list(rows[0])[:2] == ["fold", "seed"]
    tested = {(r["fold"], r["case"]) for r in rows}
    assert sorted(c for _, c in tested) == sorted(set(groups))
    for k, fold in enumerate(ctx["folds"]["per_fold"]):
        assert {c for f, c in tested if f == str(k)} == set(fold["groups"]["test"])
    assert (tmp_path / "out" / "cases.png").is_file()


def test_one_synthetic_set_is_filtered_per_fold(tmp_path: Path) -> None:
    real = make_volume_set(tmp_path / "real")
    pairs = make_pairs(real, tmp_path / "pairs", per_row=2)  # versions of all 12 rows
    cfg = load_segment_config(None, [f"data.shards={real}", f"data.synthetic={pairs}",
                                     "data.folds=3", "train.training_data=merging",
                                     "train.seeds=[0]", *TINY])  # fmt: skip
    result = evaluate_segmentation(cfg, tmp_path / "out")
    per_fold = result["context"]["folds"]["per_fold"]
    kept = result["context"]["training_data"]["synthetic_rows"]
    for fold, rows in zip(per_fold, kept):
        assert rows["rows"] == 24 and rows["kept"] == 2 * fold["split_sizes"]["train"]


def test_a_synthetic_set_per_fold_from_the_fold_sets(tmp_path: Path) -> None:
    real = make_volume_set(tmp_path / "real")
    write_fold_sets(real, tmp_path / "folds", folds=3)
    per_fold = [
        str(make_pairs(tmp_path / "folds" / f"fold{k}", tmp_path / f"pairs{k}", split="train"))
        for k in range(3)
    ]
    cfg = load_segment_config(None, [f"data.shards={real}", f"data.synthetic_folds={per_fold}",
                                     "data.folds=3", "train.training_data=merging",
                                     "train.seeds=[0]", *TINY])  # fmt: skip
    result = evaluate_segmentation(cfg, tmp_path / "out")
    assert {f"synthetic_fold{k}" for k in range(3)} <= set(result["inputs"])
    kept = result["context"]["training_data"]["synthetic_rows"]
    assert all(r["kept"] == r["rows"] for r in kept)  # each was made from its fold's train rows


def _refused(tmp_path: Path, error: type[SynmedError], match: str, *overrides: str) -> SynmedError:
    out = tmp_path / "out"
    with pytest.raises(error, match=match) as info:
        evaluate_segmentation(load_segment_config(None, [*TINY, *overrides]), out)
    assert not out.exists() and info.value.fix
    return info.value


def test_bad_fold_settings_are_one_error_each(tmp_path: Path) -> None:
    real = make_volume_set(tmp_path / "real")
    plain = make_shard_set(tmp_path / "plain", n=9, masks=True, size=16)
    pairs = make_pairs(real, tmp_path / "pairs")
    shards, folds = f"data.shards={real}", "data.folds=3"
    err = _refused(tmp_path, DataError, "has no group column", f"data.shards={plain}", folds)
    assert str(plain) in err.what
    _refused(tmp_path, DataError, "has 2 group", f"data.shards={make_volume_set(tmp_path / 'two', volumes=2)}", folds)  # fmt: skip
    _refused(tmp_path, ConfigError, "lists 2 set", shards, folds, "train.training_data=mixed",
             f"data.synthetic_folds=[{pairs}, {pairs}]")  # fmt: skip
    _refused(tmp_path, ConfigError, "data.folds=1", shards, "train.training_data=mixed",
             f"data.synthetic_folds=[{pairs}]")  # fmt: skip
    _refused(tmp_path, ConfigError, "both set", shards, folds, "train.training_data=mixed",
             f"data.synthetic={pairs}", f"data.synthetic_folds=[{pairs}, {pairs}, {pairs}]")  # fmt: skip
    _refused(tmp_path, ConfigError, "data.eval_split=val with data.folds=3", shards, folds,
             "data.eval_split=val")  # fmt: skip
    _refused(tmp_path, ConfigError, "'data.fold_val_fraction' = 1", shards, folds,
             "data.fold_val_fraction=1")  # fmt: skip
    unpaired = make_shard_set(tmp_path / "unpaired", n=8, masks=True, size=16, source="synthetic")
    err = _refused(tmp_path, DataError, "another fold's test masks", shards, folds,
                   "train.training_data=mixed", f"data.synthetic={unpaired}")  # fmt: skip
    assert "data.synthetic_folds" in err.fix


def test_cli_exit_status_for_a_set_without_groups(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = make_shard_set(tmp_path / "plain", n=9, masks=True, size=16)
    out = tmp_path / "out"
    config = Path(__file__).parents[3] / "configs/evaluate/segment_mni152.yaml"
    code = synmed_main(["evaluate", "segment", str(config),
                        f"data.shards={plain}", "data.folds=3", "--out", str(out)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "has no group column" in err and "fix:" in err
    assert "Traceback" not in err and not out.exists()
    vols = make_volume_set(tmp_path / "vols")
    code = synmed_main(["evaluate", "segment", str(config), f"data.shards={vols}", "data.folds=3",
                        *TINY, "train.seeds=[0]", "--out", str(out)])  # fmt: skip
    assert code == 0 and "3 folds by group" in capsys.readouterr().out
