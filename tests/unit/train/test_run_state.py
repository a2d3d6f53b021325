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


def _save_on_two_ranks(rank: int, run_dir: str, port: int, failures: dict) -> None:
    """One rank of a two-process (gloo) checkpoint save whose rank 1 cannot write its RNG file."""
    import errno
    import os

    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    if rank == 1:

        def full_disk(obj: object, path: Path) -> None:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))

        run_state._save_tensor_file = full_disk  # this process only

    def all_ok(ok: bool) -> bool:
        failed = torch.tensor([0 if ok else 1])
        dist.all_reduce(failed)
        return int(failed.item()) == 0

    try:
        run_state.save_checkpoint(
            Path(run_dir),
            4,
            {"w": torch.zeros(2)} if rank == 0 else None,
            rank=rank,
            world_size=2,
            barrier=dist.barrier,
            all_ok=all_ok,
            config_digest="c" * 64,
            data_digest="d" * 64,
            keep_last=3,
        )
    except run_state.CheckpointWriteError as err:
        failures[rank] = err.what
    finally:
        dist.destroy_process_group()


def test_a_failed_write_on_one_rank_fails_every_rank_instead_of_hanging(tmp_path: Path) -> None:
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    failures = mp.Manager().dict()
    context = mp.spawn(
        _save_on_two_ranks, args=(str(tmp_path), port, failures), nprocs=2, join=False
    )
    import time

    deadline = time.monotonic() + 120  # a hang (the bug) fails here instead of stalling the suite
    while not context.join(timeout=max(deadline - time.monotonic(), 0.1)):
        assert time.monotonic() < deadline, "the ranks did not finish: one waits for the other"
    assert "rng-rank1.pt" in failures[1] and "No space left on device" in failures[1]
    assert "another rank could not write" in failures[0]
    assert "last good checkpoint: none yet" in failures[0]
    assert not (tmp_path / "checkpoints").exists() or not any(
        (tmp_path / "checkpoints").iterdir()
    )  # the partial checkpoint is gone on every rank
