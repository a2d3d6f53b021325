"""One resumable run state, saved atomically by every rank together.

A checkpoint is a folder ``checkpoints/step-00001000/``::

    state.pt          model, EMA, optimizer, LR schedule, grad scaler, data position (rank 0 writes)
    rng-rank0.pt ...  every rank's RNG states (torch, CUDA, numpy, python), one file per rank
    meta.json         step, config digest, data digest, world size and the sha256 of every file

It is written as ``.step-00001000.tmp/`` and renamed once ``meta.json`` is in, so a folder named
``step-*`` is always complete. Files are plain tensors and containers, read back with
``torch.load(weights_only=True)``: nothing in a checkpoint runs as code.
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from suite.artifacts.digests import first_mismatch, sha256_file
from suite.artifacts.files import atomic_write_text, fsync_dir
from suite.errors import SynmedError

CHECKPOINTS = "checkpoints"
STATE = "state.pt"
META = "meta.json"


class CheckpointError(SynmedError):
    """A checkpoint that cannot be used: missing, damaged, or from another config."""


@dataclass(slots=True)
class CheckpointMeta:
    step: int
    config_digest: str
    data_digest: str
    world_size: int
    files: dict[str, str] = field(default_factory=dict)  # name -> sha256
    created: str = ""


def step_dir_name(step: int) -> str:
    return f"step-{step:08d}"


# -- RNG -------------------------------------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    """This process's RNG states, as tensors and tuples that ``weights_only`` loading accepts."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"])
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# -- save ------------------------------------------------------------------------------------------


class _WriteAll:
    """A file for ``torch.save`` that keeps the ``OSError`` of a failed write: torch's zip writer
    reports a full disk or a file-size limit only as "unexpected pos" otherwise."""

    def __init__(self, f: Any) -> None:
        self.f, self.error = f, None

    def write(self, data: Any) -> int:
        view, done = memoryview(data), 0
        try:
            while done < len(view):
                done += self.f.write(view[done:])
        except OSError as err:
            self.error = err
            raise
        return done

    def flush(self) -> None:
        self.f.flush()


def _save_tensor_file(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb", buffering=0) as f:
        writer = _WriteAll(f)
        try:
            torch.save(obj, writer)
        except RuntimeError:
            if writer.error is None:
                raise
            raise writer.error from None
        os.fsync(f.fileno())
    os.replace(tmp, path)


class CheckpointWriteError(CheckpointError):
    """A checkpoint that could not be written (a full disk, a file-size limit); its partial
    folder is removed and the checkpoints before it are untouched."""

    def __init__(self, what: str, fix: str, path: Path, last_good: Path | None) -> None:
        super().__init__(what, fix)
        self.path, self.last_good = path, last_good


def save_checkpoint(
    run_dir: Path,
    step: int,
    state: dict[str, Any] | None,
    *,
    rank: int,
    world_size: int,
    barrier: Callable[[], None],
    all_ok: Callable[[bool], bool] | None = None,
    config_digest: str,
    data_digest: str,
    keep_last: int,
) -> Path:
    """Save a checkpoint together on every rank (each calls this with the same ``step``).

    Rank 0 passes the training ``state``; the others pass None. Every rank writes its RNG states.
    Returns the final folder. Older checkpoints beyond ``keep_last`` are removed afterwards.
    ``all_ok(ok)`` tells every rank whether all ranks wrote their files (a collective; the default,
    for one process, returns ``ok``): a rank whose write failed must not leave the others waiting
    at the next barrier for it.
    """
    all_ok = all_ok or (lambda ok: ok)
    root = run_dir / CHECKPOINTS
    final = root / step_dir_name(step)
    tmp = root / f".{final.name}.tmp"
    if rank == 0:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)  # a crashed earlier attempt at the same step
        tmp.mkdir()
    barrier()
    writing = tmp / f"rng-rank{rank}.pt"
    failure: OSError | None = None
    try:
        _save_tensor_file(rng_state(), writing)
        if rank == 0:
            assert state is not None
            writing = tmp / STATE
            _save_tensor_file(state, writing)
    except OSError as err:
        failure = err
    if not all_ok(failure is None):
        if failure is not None:
            _write_failed(run_dir, tmp, writing, failure)
        if rank == 0:
            shutil.rmtree(tmp, ignore_errors=True)
        last = latest_checkpoint(run_dir)
        raise CheckpointWriteError(
            f"another rank could not write its part of checkpoint {final.name} (its error names "
            f"the file); the partial checkpoint was removed; last good checkpoint: {last or 'none yet'}",
            f"free space on the disk of {run_dir} (or raise the file-size limit), then rerun",
            tmp,
            last,
        )
    if rank == 0:
        files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir())}
        meta = CheckpointMeta(
            step=step,
            config_digest=config_digest,
            data_digest=data_digest,
            world_size=world_size,
            files=files,
            created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )
        try:
            atomic_write_text(tmp / META, json.dumps(asdict(meta), indent=1))
        except OSError as err:
            _write_failed(run_dir, tmp, tmp / META, err)
        if final.exists():  # the same step saved again (e.g. on preemption right after a save)
            shutil.rmtree(final)
        os.replace(tmp, final)
        fsync_dir(root)
        for old in list_checkpoints(run_dir)[:-keep_last] if keep_last > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    barrier()
    return final


def _write_failed(run_dir: Path, tmp: Path, path: Path, err: OSError) -> None:
    """Remove the partial checkpoint (it would fill the disk further) and raise one error naming
    the file and the checkpoint a resume would continue from."""
    shutil.rmtree(tmp, ignore_errors=True)
    last = latest_checkpoint(run_dir)
    reason = err.strerror or str(err)
    if err.errno is not None:
        reason += f" ({errno.errorcode.get(err.errno, err.errno)})"
    raise CheckpointWriteError(
        f"could not write checkpoint file {path}: {reason}; the partial checkpoint was removed; "
        f"last good checkpoint: {last or 'none yet'}",
        f"free space on the disk of {run_dir} (or raise the file-size limit), then rerun with "
        "--resume"
        if last
        else f"free space on the disk of {run_dir}, then rerun",
        path,
        last,
    ) from None


def set_aside(run_dir: Path) -> Path | None:
    """Move ``checkpoints/`` to ``checkpoints.set-aside-<UTC time>/`` (nothing is deleted), so the
    run can start over in the same folder. Returns where they went (None when there were none)."""
    root = run_dir / CHECKPOINTS
    if not root.exists():
        return None
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = run_dir / f"{CHECKPOINTS}.set-aside-{stamp}"
    n = 1
    while target.exists():
        n += 1
        target = run_dir / f"{CHECKPOINTS}.set-aside-{stamp}-{n}"
    os.replace(root, target)
    fsync_dir(run_dir)
    return target


# -- load ------------------------------------------------------------------------------------------


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoint folders, oldest first."""
    root = run_dir / CHECKPOINTS
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("step-*") if p.is_dir() and (p / META).is_file())


def read_meta(checkpoint: Path) -> CheckpointMeta:
    try:
        return CheckpointMeta(**json.loads((checkpoint / META).read_text()))
    except (OSError, ValueError, TypeError) as err:
        raise CheckpointError(
            f"{checkpoint}/{META} is unreadable ({err})", "delete this checkpoint"
        ) from None


def verify_checkpoint(checkpoint: Path) -> CheckpointMeta:
    """Check every file of a checkpoint against the digests in its meta.json."""
    meta = read_meta(checkpoint)
    bad = first_mismatch(checkpoint, meta.files)
    if bad is not None:
        raise CheckpointError(
            f"{bad} is missing or does not match its sha256 in {META}",
            "delete this checkpoint folder to resume from the one before it",
        )
    return meta


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint whose digests verify; damaged newer ones are skipped."""
    for checkpoint in reversed(list_checkpoints(run_dir)):
        try:
            verify_checkpoint(checkpoint)
        except CheckpointError as err:
            print(f"warning: skipping damaged checkpoint: {err.what}")
            continue
        return checkpoint
    return None


def damaged_checkpoints(run_dir: Path) -> list[Path]:
    """The complete checkpoint folders whose files do not match their digests."""
    damaged = []
    for checkpoint in list_checkpoints(run_dir):
        try:
            verify_checkpoint(checkpoint)
        except CheckpointError:
            damaged.append(checkpoint)
    return damaged


def load_state(
    checkpoint: Path, rank: int, map_location: str | torch.device = "cpu"
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The training state and this rank's RNG states (None when the checkpoint has no file for it,
    e.g. resuming on more ranks than saved)."""
    state = torch.load(checkpoint / STATE, map_location=map_location, weights_only=True)
    rng_path = checkpoint / f"rng-rank{rank}.pt"
    rng = torch.load(rng_path, weights_only=True) if rng_path.is_file() else None
    return state, rng
