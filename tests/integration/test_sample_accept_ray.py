"""`synmed sample --accept` on the session's Ray: the classifier runs in the actors; 2 workers
with batches of 5 give the images and acceptance columns that one worker's code gives in-process
with batches of 2; the summary's per-class rates are the shards'."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from suite.data.dataset import ShardDataset
from suite.data.verify import verify_shard_set
from suite.generative.export import load_generator
from suite.sampling.acceptance import COLUMNS, Acceptor
from suite.sampling.job import plan_from_dict, sample_rows
from tests.integration.helpers import synmed
from tests.unit.sampling.test_acceptance import CLASSES, tiny_acgan, tiny_classifier

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("joined_ray")]


def test_accepting_is_deterministic_across_workers_and_batches(tmp_path: Path) -> None:
    generator = tiny_acgan(tmp_path / "gen")
    classifier = tiny_classifier(tmp_path / "clf", generator)
    out = tmp_path / "two"
    proc = synmed("sample", "--checkpoint", str(generator), "--per-class", "4", "--shard-size",
                  "4", "--accept", str(classifier), "--min-confidence", "0.5", "--max-attempts",
                  "3", "--workers", "2", "--batch-size", "5", "--out", str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert verify_shard_set(out).count == 12
    data = ShardDataset(out)
    got = {c: data.read_column(c) for c in COLUMNS}
    # one worker's code in-process, batches of 2: the same bytes and columns, index by index
    plan = plan_from_dict(json.loads((out / "job.json").read_text())["plan"])
    plan = dataclasses.replace(plan, batch_size=2)
    model, _ = load_generator(generator)
    want = sample_rows(model, plan, 0, 12, None, "cpu", Acceptor(classifier, plan, "cpu"))
    assert sorted(data.indices.tolist()) == list(range(12))
    for row, i in enumerate(data.indices):
        assert data[row]["image"].numpy().tobytes() == want["images"][i].tobytes()
        assert all(got[c][row] == want[c][i] for c in COLUMNS), i  # type: ignore[index]
    summary = json.loads((out / "sample_summary.json").read_text())
    assert len(summary["actors"]) == 2  # each loaded the generator and the classifier
    acceptance, accepted, labels = summary["acceptance"], got["accepted"], data.labels
    assert accepted is not None and labels is not None
    for c, name in enumerate(CLASSES):
        assert acceptance["per_class"][name]["rate"] == accepted[labels == c].mean()
    assert acceptance["ran_out"] == int((~accepted).sum()) > 0
    assert 0 < acceptance["accepted"] < 12 and acceptance["max_attempts"] == 3
    assert f"accepted {acceptance['accepted']}/12" in proc.stdout
    assert f"{acceptance['ran_out']} indices ran out of 3 attempts" in proc.stdout
    assert set(want["attempts"].tolist()) == {1, 2, 3}  # redraws happened, some ran out
