"""The loop's public step with two optimizers, two LR schedules and a family's train state: the
order a family chooses, a non-finite gradient caught before any weight changes, and a resume that
is bit-identical (the two-optimizer GAN families train through the same path in their own
tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from suite.config import from_dict
from suite.schema import SuiteConfig
from suite.train.loop import StepContext, TrainingError, TrainLoop


class Points(Dataset):
    def __init__(self, n: int = 32) -> None:
        self.x = torch.randn(n, 4, generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"image": self.x[i], "index": i}


class TwoPlayers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.g, self.d = nn.Linear(4, 4), nn.Linear(4, 1)

    def forward(self, batch: dict[str, Any], objective: str) -> torch.Tensor:
        fake = self.g(torch.randn_like(batch["image"]))
        if objective == "d":
            return (self.d(fake.detach()) - self.d(batch["image"])).mean()
        return -self.d(fake).mean()


class ToyTrainer(TrainLoop):
    """Steps D then G, each with its own optimizer and schedule; keeps a fade value and a named
    RNG in the train state, as PGGAN will."""

    order: list[str]
    resume_safe = frozenset({"train.max_steps"})

    def build_dataset(self, verify: str) -> Dataset:
        return Points()

    @property
    def data_digest(self) -> str:
        return "points"

    def build(self) -> None:
        torch.manual_seed(0)
        module = TwoPlayers()
        opt_d = torch.optim.Adam(module.d.parameters(), lr=1e-2)
        opt_g = torch.optim.SGD(module.g.parameters(), lr=1e-2, momentum=0.9)
        self.schedules = {
            "d": torch.optim.lr_scheduler.StepLR(opt_d, 2, 0.5),
            "g": torch.optim.lr_scheduler.LambdaLR(opt_g, lambda s: 1 / (1 + s)),
        }
        self.model, opt_d, opt_g = self.accelerator.prepare(module, opt_d, opt_g)
        self.optimizers = {"d": opt_d, "g": opt_g}
        self.order = []

    def train_step(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        losses = {}
        for name in ("d", "g"):
            losses[name] = ctx.accumulate(name)
            self.order.append(name)
            ctx.step(name)
        state = ctx.state
        state.phase = "fade"
        state.values["alpha"] = min(1.0, float(state.values.get("alpha", 0.0)) + 0.25)
        jitter = torch.rand((), generator=state.generator("jitter", seed=7))
        state.values["jitter"] = float(jitter)
        return losses

    def export(self, folder: Path, provenance: dict[str, Any]) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(self.accelerator.unwrap_model(self.model).state_dict(), folder / "w.pt")


def config(tmp_path: Path, name: str, **train: Any) -> SuiteConfig:
    body = {
        "run": {"name": name, "out_dir": str(tmp_path), "seed": 3},
        "train": {"batch_size": 4, "grad_accum": 2, "max_steps": 6, "num_workers": 0,
                  "checkpoint_every": 3, "log_every": 1, "max_grad_norm": None, **train},
    }  # fmt: skip
    return from_dict(SuiteConfig, body, source="test")


def final(trainer: ToyTrainer) -> dict[str, Any]:
    return trainer._state()


def test_two_optimizers_step_in_the_familys_order_and_resume_bit_identically(
    tmp_path: Path,
) -> None:
    whole = ToyTrainer(config(tmp_path, "whole"))
    summary = whole.fit()
    assert summary["steps"] == 6 and whole.order == ["d", "g"] * 6
    records = whole.metrics.read()
    assert {"loss_d", "loss_g"} <= records[-1].keys()
    want = final(whole)
    assert want["train_state"]["values"]["alpha"] == 1.0 and want["train_state"]["phase"] == "fade"
    assert want["schedules"]["d"]["last_epoch"] == 6  # stepped once per optimizer step

    half = ToyTrainer(config(tmp_path, "split", max_steps=3))
    half.fit()
    resumed = ToyTrainer(config(tmp_path, "split"), resume="yes")
    assert resumed.step == 3 and resumed.state.values["alpha"] == 0.75
    resumed.fit()
    got = final(resumed)
    for name, tensor in want["model"].items():
        assert torch.equal(got["model"][name], tensor), name
    a, b = got["train_state"], want["train_state"]
    assert (a["step"], a["epoch"], a["phase"], a["values"]) == (
        b["step"], b["epoch"], b["phase"], b["values"]
    )  # fmt: skip
    assert torch.equal(a["generators"]["jitter"], b["generators"]["jitter"])
    assert got["schedules"] == want["schedules"]
    for name in ("d", "g"):
        a, b = got["optimizers"][name]["state"], want["optimizers"][name]["state"]
        assert all(
            torch.equal(a[k][field], b[k][field]) for k in b for field in b[k] if field != "step"
        )


def test_a_non_finite_loss_stops_before_the_weights_change(tmp_path: Path) -> None:
    trainer = ToyTrainer(config(tmp_path, "nan", max_steps=2))
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.model.d.weight.data.fill_(float("nan"))
    before["d.weight"] = trainer.model.d.weight.detach().clone()
    with pytest.raises(TrainingError, match="the training loss became non-finite") as err:
        trainer.fit()
    assert "weights were not updated" in str(err.value) and "optimizer d" in str(err.value)
    after = trainer.model.state_dict()
    assert all(
        torch.equal(after[k], v) or (torch.isnan(v).all() and torch.isnan(after[k]).all())
        for k, v in before.items()
    )


def test_a_checkpoint_of_the_old_format_is_refused_by_name(tmp_path: Path) -> None:
    from suite.errors import ConfigError
    from suite.train import run_state

    trainer = ToyTrainer(config(tmp_path, "old", max_steps=3))
    trainer.fit()
    state = trainer._state()
    old = {"model": state["model"], "optimizer": state["optimizers"]["d"], "scaler": None,
           "step": 3, "data": state["data"]}  # fmt: skip
    run_dir = tmp_path / "old"
    run_state.save_checkpoint(
        run_dir, 3, old, rank=0, world_size=1, barrier=lambda: None,
        config_digest=trainer.config_digest, data_digest="points", keep_last=1,
    )  # fmt: skip
    with pytest.raises(ConfigError, match="written by an older synmed"):
        ToyTrainer(config(tmp_path, "old", max_steps=6), resume="yes")
