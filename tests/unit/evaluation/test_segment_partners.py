"""Merging partners from each real slice's own synthetic versions (seed 002), and synthetic rows
made from val/test masks kept out of training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from suite.errors import DataError
from suite.evaluation.segment.config import load_segment_config
from suite.evaluation.segment.data import open_sets
from suite.evaluation.segment.run import evaluate_segmentation
from suite.evaluation.segment.train import own_partners
from tests.unit.data.helpers import make_pairs, make_shard_set, make_volume_set

TINY = ["train.epochs=1", "train.seeds=[0]", "train.batch_size=4", "model.channels=[4, 8]",
        "train.merge_patch=4", "report.figure_cases=0"]  # fmt: skip


def cfg_overrides(real: Path, synthetic: Path, mode: str) -> list[str]:
    return [f"data.shards={real}", f"data.synthetic={synthetic}", f"train.training_data={mode}",
            *TINY]  # fmt: skip


def _refused(tmp_path: Path, match: str, *overrides: str) -> DataError:
    out = tmp_path / "out"
    with pytest.raises(DataError, match=match) as info:
        evaluate_segmentation(load_segment_config(None, list(overrides)), out)
    assert not out.exists() and not list(tmp_path.glob(".out.staging-*"))
    return info.value


def make_subset(real: Path, out: Path, keep: int) -> Path:
    """The first ``keep`` training rows of ``real`` (indices kept), as a set of their own."""
    from suite.data.dataset import ShardDataset
    from suite.data.writer import ShardSetWriter

    ds = ShardDataset(real, split="train")
    out.mkdir()
    writer = ShardSetWriter(out, dict(ds.manifest.attrs))
    for p in range(keep):
        s = ds[p]
        writer.add({"images": s["image"].numpy(), "masks": s["mask"].numpy(), "index": s["index"]})
    writer.close()
    return out


def test_own_partners_are_drawn_from_each_rows_versions_reproducibly() -> None:
    versions = {3: np.array([0, 1, 2]), 7: np.array([5]), 9: np.array([3, 4])}
    rows = [3, 7, 9, 3] * 50
    picks = own_partners(versions, rows, torch.Generator().manual_seed(4))
    assert all(p in versions[r] for p, r in zip(picks, rows))
    assert {p for p, r in zip(picks, rows) if r == 3} == {0, 1, 2}  # every version is drawn
    assert picks == own_partners(versions, rows, torch.Generator().manual_seed(4))
    assert picks != own_partners(versions, rows, torch.Generator().manual_seed(5))


def test_partner_map_and_synthetic_rows_follow_source_index(tmp_path: Path) -> None:
    real = make_volume_set(tmp_path / "real")
    pairs = make_pairs(real, tmp_path / "pairs", per_row=3)  # versions of every split's rows
    cfg = load_segment_config(None, [f"data.shards={real}", f"data.synthetic={pairs}",
                                     "train.training_data=merging"])  # fmt: skip
    sets = open_sets(cfg.data, cfg.train)
    assert sets.synthetic is not None and sets.partners is not None
    made_from = sets.synthetic.read_column("source_index")
    train = set(sets.train.indices.tolist())
    assert set(made_from.tolist()) == train  # val/test rows' versions are gone
    assert sets.synthetic_rows == {
        "rows": 36,
        "kept": 12,
        "filter": "source_index among the training rows",
    }
    for index, positions in sets.partners.items():
        assert len(positions) == 3 and (made_from[positions] == index).all()


def test_same_seed_gives_a_bit_identical_merging_run(tmp_path: Path) -> None:
    real = make_volume_set(tmp_path / "real")
    pairs = make_pairs(real, tmp_path / "pairs", per_row=2, split="train")
    overrides = [f"data.shards={real}", f"data.synthetic={pairs}", "train.training_data=merging",
                 *TINY, "train.epochs=2"]  # fmt: skip
    runs = []
    for name in ("a", "b"):
        result = evaluate_segmentation(load_segment_config(None, overrides), tmp_path / name)
        runs.append((result["metrics"], (tmp_path / name / "per_case.csv").read_text(),
                     (tmp_path / name / "history.json").read_text()))  # fmt: skip
    assert runs[0] == runs[1]
    training = result["context"]["training_data"]
    assert training["partner"].startswith("one of the real row's own")
    assert training["synthetic_rows"]["kept"] == 8 == training["synthetic_rows"]["rows"]


def test_mixed_training_takes_only_rows_made_from_training_rows(tmp_path: Path) -> None:
    real = make_volume_set(tmp_path / "real")
    pairs = make_pairs(real, tmp_path / "pairs", per_row=1)
    cfg = load_segment_config(None, [f"data.shards={real}", f"data.synthetic={pairs}",
                                     "train.training_data=mixed", *TINY])  # fmt: skip
    result = evaluate_segmentation(cfg, tmp_path / "out")
    rows = result["context"]["training_data"]["synthetic_rows"]
    assert rows["rows"] == 12 and rows["kept"] == 4
    assert result["context"]["split_sizes"]["synthetic"] == 4
    # asking for more than the 4 rows made from training rows is refused, naming the filter
    with pytest.raises(DataError, match="has 4 made from training rows"):
        evaluate_segmentation(
            load_segment_config(
                None, [*cfg_overrides(real, pairs, "mixed"), "train.synthetic_ratio=2"]
            ),
            tmp_path / "never",
        )
    assert not (tmp_path / "never").exists()


def test_own_partners_need_source_index(tmp_path: Path) -> None:
    real = make_volume_set(tmp_path / "real")
    plain = make_shard_set(tmp_path / "plain", n=8, masks=True, size=16, source="synthetic")
    err = _refused(tmp_path, "has no source_index column", *cfg_overrides(real, plain, "merging"))
    assert str(plain) in err.what and "train.partner=any" in err.fix
    assert "--conditions REAL --per-condition K" in err.fix


def test_a_training_row_without_synthetic_versions(tmp_path: Path) -> None:
    real = make_volume_set(tmp_path / "real")
    some = make_pairs(make_subset(real, tmp_path / "sub", keep=2), tmp_path / "some", per_row=2)
    err = _refused(tmp_path, "2 of the 4 training rows", *cfg_overrides(real, some, "merging"))
    assert str(some) in err.what and "train.partner=any" in err.fix


def test_synthetic_rows_made_only_from_val_and_test_rows(tmp_path: Path) -> None:
    real = make_volume_set(tmp_path / "real")
    val = make_pairs(real, tmp_path / "val-pairs", per_row=1, split="val")
    err = _refused(tmp_path, "none of the 4 rows", *cfg_overrides(real, val, "mixed"))
    assert "--conditions-split train" in err.fix


def test_result_json_records_the_partner_rule(tmp_path: Path) -> None:
    real = make_volume_set(tmp_path / "real")
    plain = make_shard_set(tmp_path / "plain", n=8, masks=True, size=16, source="synthetic")
    evaluate_segmentation(load_segment_config(None, [*cfg_overrides(real, plain, "merging"),
                                                     "train.partner=any"]), tmp_path / "out")  # fmt: skip
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    training = result["context"]["training_data"]
    assert training["partner"] == "any synthetic row"
    assert training["synthetic_rows"] == {"rows": 8, "kept": 8, "filter": None}
    assert result["settings"]["config"]["train"]["partner"] == "any"
