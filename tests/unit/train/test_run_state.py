"""Run state: atomic checkpoints with digests, pruning, RNG round trips."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from suite.train import run_state


def save(run_dir: Path, step: int, state: dict | None = None, keep_last: int = 3) -> Path:
    return run_state.save_checkpoint(
        run_dir,
        step,
        state if state is not None else {"w": torch.full((3,), float(step)), "step": step},
        rank=0,
        world_size=1,
        barrier=lambda: None,
        config_digest="c" * 64,
        data_digest="d" * 64,
        keep_last=keep_last,
    )


def test_checkpoint_layout_and_round_trip(tmp_path: Path) -> None:
    path = save(tmp_path, 7)
    assert path.name == "step-00000007"
    assert sorted(p.name for p in path.iterdir()) == ["meta.json", "rng-rank0.pt", "state.pt"]
    meta = run_state.verify_checkpoint(path)
    assert meta.step == 7 and set(meta.files) == {"rng-rank0.pt", "state.pt"}
    state, rng = run_state.load_state(path, rank=0)
    assert torch.equal(state["w"], torch.full((3,), 7.0)) and rng is not None
    assert (
        run_state.load_state(path, rank=1)[1] is None
    )  # no RNG file for a rank that was not there
    assert not list((tmp_path / "checkpoints").glob(".*"))  # no temporary folder left


def test_keep_last_prunes_oldest(tmp_path: Path) -> None:
    for step in (1, 2, 3, 4):
        save(tmp_path, step, keep_last=2)
    assert [p.name for p in run_state.list_checkpoints(tmp_path)] == [
        "step-00000003",
        "step-00000004",
    ]


def test_latest_skips_damaged_and_incomplete(tmp_path: Path) -> None:
    save(tmp_path, 1)
    newest = save(tmp_path, 2)
    (tmp_path / "checkpoints" / ".step-00000003.tmp").mkdir()  # a save killed half-way
    assert run_state.latest_checkpoint(tmp_path) == newest
    (newest / "state.pt").write_bytes(b"garbage")
    assert run_state.latest_checkpoint(tmp_path).name == "step-00000001"
    with pytest.raises(run_state.CheckpointError, match="does not match its sha256"):
        run_state.verify_checkpoint(newest)


def test_files_load_with_weights_only(tmp_path: Path) -> None:
    path = save(tmp_path, 1)
    rng = torch.load(path / "rng-rank0.pt", weights_only=True)  # nothing in it needs pickle
    assert set(rng) >= {"torch", "numpy", "python"}


def test_rng_state_restores_every_generator() -> None:
    state = run_state.rng_state()
    first = (torch.rand(3), np.random.rand(3), random.random())
    run_state.set_rng_state(state)
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], again[0])
    assert np.array_equal(first[1], again[1]) and first[2] == again[2]
