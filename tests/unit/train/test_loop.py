"""The loop on runs that go wrong: diverged weights are never saved, the advice it prints works
when followed (a changed learning rate, damaged checkpoints), a checkpoint that cannot be written
leaves nothing behind."""

from __future__ import annotations

import errno
import json
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import Dataset

from suite.errors import ConfigError
from suite.train import run_state
from suite.train.loop import TrainingError
from suite.train.monitor import throughput_line
from tests.unit.train.test_step import Points, ToyTrainer, config


class LrToy(ToyTrainer):
    """The toy with ``train.lr`` as the base of both optimizers' schedules."""

    def build(self) -> None:
        super().build()
        lr = self.train_cfg.lr
        for optimizer in self.optimizers.values():
            for group in optimizer.param_groups:
                group["lr"] = group["initial_lr"] = lr
        for schedule in self.schedules.values():
            schedule.base_lrs = [lr for _ in schedule.base_lrs]


class Exploding(LrToy):
    """Its weights blow up after step ``at`` (what one step at lr 1e30 does)."""

    at = 2

    def after_step(self) -> None:
        if self.step + 1 == self.at:
            with torch.no_grad():
                for p in self.model.parameters():
                    p.mul_(1e20)


def test_exploded_weights_are_never_checkpointed_or_exported(tmp_path: Path) -> None:
    trainer = Exploding(config(tmp_path, "boom", checkpoint_every=1, max_steps=4))
    with pytest.raises(TrainingError) as err:
        trainer.fit()
    run = tmp_path / "boom"
    text = str(err.value)
    assert "exploded" in text and "by step 2" in text and "checkpoint was not written" in text
    assert f"last good checkpoint: {run / 'checkpoints' / 'step-00000001'}" in text
    assert f"{run / 'config.yaml'} train.lr=" in err.value.fix
    assert "--resume --allow-config-change" in err.value.fix
    assert [p.name for p in run_state.list_checkpoints(run)] == ["step-00000001"]
    assert not (run / "export").exists() and not list((run / "checkpoints").glob(".*tmp"))


def test_nan_stop_then_resume_with_a_changed_lr_finishes_and_records_it(tmp_path: Path) -> None:
    run = tmp_path / "nan"
    LrToy(config(tmp_path, "nan", max_steps=3, lr=1e-2)).fit()
    diverging = Exploding(config(tmp_path, "nan", max_steps=6, lr=1.0), resume="yes",
                          allow_config_change=True)  # fmt: skip
    diverging.at = 4
    with pytest.raises(TrainingError) as err:
        diverging.fit()
    assert f"last good checkpoint: {run / 'checkpoints' / 'step-00000003'}" in str(err.value)
    assert "train.lr=0.1 --resume --allow-config-change" in err.value.fix
    # Without the flag the changed lr is refused, naming the flag.
    with pytest.raises(ConfigError, match="--allow-config-change") as refused:
        LrToy(config(tmp_path, "nan", max_steps=6, lr=1e-3), resume="yes")
    assert "train.lr" in str(refused.value)
    # As printed, with a lower lr: it resumes from step 3 and finishes, the lr applied and kept.
    resumed = LrToy(config(tmp_path, "nan", max_steps=6, lr=1e-3), resume="yes",
                    allow_config_change=True)  # fmt: skip
    assert resumed.step == 3
    # d: StepLR(2, 0.5) at position 3 -> 1e-3 * 0.5; g: LambdaLR 1 / (1 + 3) -> 1e-3 / 4
    assert resumed.optimizers["d"].param_groups[0]["lr"] == pytest.approx(5e-4)
    assert resumed.optimizers["g"].param_groups[0]["lr"] == pytest.approx(2.5e-4)
    assert resumed.config_changes == {"train.lr": [1.0, 1e-3]}
    summary = resumed.fit()
    assert summary["steps"] == 6 and summary["config_changes"] == {"train.lr": [1.0, 1e-3]}
    record = json.loads((run / "config-changes.jsonl").read_text().splitlines()[-1])
    assert record["step"] == 3 and record["changes"] == {"train.lr": [1.0, 1e-3]}


def test_allow_config_change_still_refuses_what_makes_the_checkpoint_meaningless(
    tmp_path: Path,
) -> None:
    ToyTrainer(config(tmp_path, "batch", max_steps=3)).fit()
    with pytest.raises(ConfigError, match="train.batch_size") as err:
        ToyTrainer(config(tmp_path, "batch", max_steps=6, batch_size=2), resume="yes",
                   allow_config_change=True)  # fmt: skip
    assert "meaningless" in str(err.value) and "set train.batch_size back" in err.value.fix


def damage_every_checkpoint(run: Path) -> list[Path]:
    checkpoints = run_state.list_checkpoints(run)
    for checkpoint in checkpoints:
        (checkpoint / "state.pt").write_bytes(b"damaged")
    return checkpoints


def test_every_checkpoint_damaged_the_advice_does_not_loop(tmp_path: Path) -> None:
    run = tmp_path / "dmg"
    ToyTrainer(config(tmp_path, "dmg", max_steps=6)).fit()
    damaged = damage_every_checkpoint(run)
    with pytest.raises(ConfigError) as resume:
        ToyTrainer(config(tmp_path, "dmg"), resume="yes")
    assert all(str(p) in str(resume.value) for p in damaged) and "--restart" in resume.value.fix
    assert "drop --resume" not in resume.value.fix.split("(")[0]
    with pytest.raises(ConfigError) as fresh:
        ToyTrainer(config(tmp_path, "dmg"))
    assert "only damaged checkpoints" in str(fresh.value) and "--restart" in fresh.value.fix
    assert "--resume" not in fresh.value.fix
    # Following either fix works: --restart moves them aside (nothing deleted) and trains.
    assert ToyTrainer(config(tmp_path, "dmg"), resume="restart").fit()["steps"] == 6
    (aside,) = run.glob("checkpoints.set-aside-*")
    assert sorted(p.name for p in aside.iterdir()) == [p.name for p in damaged]
    # ... and so does the other: move them away yourself and drop --resume.
    damage_every_checkpoint(run)
    (run / "checkpoints").rename(tmp_path / "moved")
    assert ToyTrainer(config(tmp_path, "dmg")).fit()["steps"] == 6


def test_auto_resume_over_only_damaged_checkpoints_sets_them_aside_and_starts_over(
    tmp_path: Path,
) -> None:
    run = tmp_path / "requeued"
    ToyTrainer(config(tmp_path, "requeued", max_steps=6)).fit()
    damaged = damage_every_checkpoint(run)
    assert ToyTrainer(config(tmp_path, "requeued"), resume="auto").fit()["steps"] == 6
    (aside,) = run.glob("checkpoints.set-aside-*")
    assert sorted(p.name for p in aside.iterdir()) == [p.name for p in damaged]
    assert run_state.latest_checkpoint(run) is not None  # the new run's, whole


def test_a_checkpoint_write_out_of_space_is_one_error_and_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "full"
    real = run_state._save_tensor_file

    def full_disk(obj: Any, path: Path) -> None:
        if path.name == "state.pt" and "00000006" in str(path):
            path.with_name(path.name + ".tmp").write_bytes(b"x" * 1000)  # what a write leaves
            raise OSError(errno.ENOSPC, "No space left on device")
        real(obj, path)

    monkeypatch.setattr(run_state, "_save_tensor_file", full_disk)
    with pytest.raises(run_state.CheckpointWriteError) as err:
        ToyTrainer(config(tmp_path, "full", max_steps=6)).fit()
    text = str(err.value)
    assert f"{run / 'checkpoints' / '.step-00000006.tmp' / 'state.pt'}" in text
    assert "No space left on device (ENOSPC)" in text
    assert f"last good checkpoint: {run / 'checkpoints' / 'step-00000003'}" in text
    assert not list((run / "checkpoints").glob(".*")) and not (run / "export").exists()
    assert f"{run / 'config.yaml'} --resume" in err.value.fix
    monkeypatch.setattr(run_state, "_save_tensor_file", real)
    assert ToyTrainer(config(tmp_path, "full"), resume="yes").fit()["steps"] == 6


class SlowPoints(Points):
    """Points that take 50 ms each to load: far longer than the toy's step."""

    def __getitem__(self, i: int) -> dict[str, Any]:
        time.sleep(0.05)
        return super().__getitem__(i)


class StarvedToy(LrToy):
    def build_dataset(self, verify: str) -> Dataset:
        return SlowPoints()


def test_the_share_of_time_spent_waiting_on_data_is_logged_and_summarised(tmp_path: Path) -> None:
    fed = LrToy(config(tmp_path, "fed", max_steps=4)).fit()
    starved_trainer = StarvedToy(config(tmp_path, "starved", max_steps=4))
    starved = starved_trainer.fit()
    # 8 items of 50 ms per step (batch 4, 2 micro-batches): at least 1.6 s of the run waited,
    # against the toy's milliseconds of compute (the fed run's own share depends on the machine's
    # load, since its loading and its steps both take microseconds)
    assert starved["data_wait_s"] >= 4 * 8 * 0.05 > fed["data_wait_s"] >= 0.0
    assert 0.5 < starved["data_wait_fraction"] <= 1.0
    assert 0.0 <= fed["data_wait_fraction"] <= 1.0
    records = starved_trainer.metrics.read()
    assert len(records) == 4 and all(0.5 < r["data_wait_fraction"] <= 1.0 for r in records)
    saved = json.loads((tmp_path / "starved" / "summary.json").read_text())
    assert saved["data_wait_fraction"] == starved["data_wait_fraction"]
    assert "waiting on data" in throughput_line(saved)
