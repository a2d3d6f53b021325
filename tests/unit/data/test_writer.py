"""Staged output: a failed writer leaves the destination exactly as it was."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest

from suite.artifacts.files import OutOfSpace, out_of_space
from suite.data.shards import MARKER, read_manifest
from suite.data.verify import verify_shard_set
from suite.data.writer import ShardSetWriter, staged_output, staging_name
from suite.errors import ShardError
from tests.unit.data.helpers import make_shard_set


def test_error_leaves_no_output(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(RuntimeError), staged_output(out) as staging:
        (staging / "shard-00000.h5").write_text("half")
        raise RuntimeError("reader failed")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no staging folder left behind either


def test_empty_existing_folder_stays_empty_on_error(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(RuntimeError), staged_output(out):
        raise RuntimeError("boom")
    assert out.is_dir() and not any(out.iterdir())


def test_success_moves_everything(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with staged_output(out) as staging:
        writer = ShardSetWriter(staging, {"class_names": []}, shard_size=2)
        for i in range(5):
            writer.add({"images": np.zeros((1, 2, 2), np.uint8), "index": i})
        writer.close()
    assert read_manifest(out).count == 5
    assert sorted(p.name for p in out.iterdir())[-1] == "shard-00002.h5"


def test_refuses_non_empty_unless_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with staged_output(out) as staging:
        (staging / "old.txt").write_text("x")
    with pytest.raises(ShardError, match="not empty"), staged_output(out):
        pass
    with staged_output(out, overwrite=True) as staging:
        (staging / "new.txt").write_text("y")
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "new.txt"]
    assert json.loads((out / MARKER).read_text())["writer"] == __name__


def test_overwrite_refuses_a_folder_synmed_did_not_write(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep")
    refused = pytest.raises(ShardError, match=r"mine is not empty and was not written by synmed")
    with refused as err, staged_output(out, overwrite=True) as staging:
        (staging / "new.txt").write_text("y")
    assert "remove" in (err.value.fix or "") and "another --out" in (err.value.fix or "")
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no staging folder


def test_overwrite_accepts_an_older_set_that_has_only_a_manifest(tmp_path: Path) -> None:
    out = make_shard_set(tmp_path / "old", n=5)  # written without staged_output: no marker
    with staged_output(out, overwrite=True) as staging:
        make_shard_set(staging, n=3)
    assert read_manifest(out).count == 3 and (out / MARKER).is_file()


@pytest.mark.parametrize("where", ["same", "inside", "contains", "symlink"])
def test_output_may_not_be_inside_or_hold_an_input(tmp_path: Path, where: str) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "a.png").write_bytes(b"image")
    out = {
        "same": source,
        "inside": source / "shards",
        "contains": tmp_path,
        "symlink": tmp_path / "link",
    }[where]
    if where == "symlink":
        out.symlink_to(source)
    refused = pytest.raises(ShardError, match=r"output .* (is|lies inside|contains) the input")
    with refused as err, staged_output(out, overwrite=True, inputs=[source]) as staging:
        (staging / "x").write_text("y")
    assert "--out" in (err.value.fix or "")
    assert [p.name for p in source.iterdir()] == ["a.png"]
    assert not list(tmp_path.glob(".*staging*")) and not list(source.glob(".*"))


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_staging_folders_of_dead_writers_on_this_host_are_removed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    host = socket.gethostname()
    dead = tmp_path / staging_name(out, host, _dead_pid())
    alive = tmp_path / staging_name(out, host, os.getppid())
    elsewhere = tmp_path / staging_name(out, "other-node", _dead_pid())
    other_out = tmp_path / staging_name(tmp_path / "out2", host, _dead_pid())
    for folder in (dead, alive, elsewhere, other_out):
        folder.mkdir()
        (folder / "shard-00000.h5").write_text("half")
    with staged_output(out) as staging:
        assert staging.name == staging_name(out)
        (staging / "x").write_text("y")
    assert not dead.exists()
    assert alive.exists() and elsewhere.exists() and other_out.exists()


@pytest.mark.parametrize(
    "error",
    [
        OSError(errno.ENOSPC, "No space left on device"),
        OSError(errno.EDQUOT, "Disk quota exceeded"),
        # h5py's wording: errno only in the text
        OSError(
            "Can't write data (file write failed: time = Tue, filename = 'x.h5', file "
            "descriptor = 3, errno = 27, error message = 'File too large', buf = 0x1)"
        ),
        RuntimeError("Can't decrement id ref count (unable to extend file properly, errno = 28)"),
    ],
)
def test_a_full_disk_inside_the_block_is_one_error_and_no_staging(
    tmp_path: Path, error: BaseException
) -> None:
    out = tmp_path / "out"
    with pytest.raises(OutOfSpace) as err, staged_output(out) as staging:
        (staging / "shard-00000.h5").write_text("half")
        raise error
    assert str(staging) in err.value.what and "failed: " in err.value.what
    assert "another --out" in (err.value.fix or "")
    assert err.value.code == out_of_space(error)
    assert list(tmp_path.iterdir()) == []


def test_out_of_space_knows_the_errnos_and_nothing_else() -> None:
    assert out_of_space(OSError(errno.ENOSPC, "x")) == errno.ENOSPC
    assert out_of_space(OSError("Unable to create file (errno = 122, error message = 'x')")) == (
        errno.EDQUOT
    )
    wrapped = ValueError("outer")
    wrapped.__cause__ = OSError(errno.EFBIG, "File too large")
    assert out_of_space(wrapped) == errno.EFBIG
    assert out_of_space(OSError(errno.EACCES, "Permission denied")) is None
    assert out_of_space(ValueError("no space here")) is None


# -- a SIGKILL at each step of the overwrite swap ---------------------------------------------------


def _killed_at(out: Path, step: int) -> bool:
    """Overwrite ``out`` in a forked child that SIGKILLs itself before its ``step``-th file
    operation after the new set is complete; True when the kill came before the swap finished."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            with staged_output(out, overwrite=True) as staging:
                make_shard_set(staging, n=6, shard_size=2, classes=("x", "y"))
                count = iter(range(10**6))

                def kill_first(real):
                    def op(*args, **kwargs):
                        if next(count) == step:
                            os.kill(os.getpid(), signal.SIGKILL)
                        return real(*args, **kwargs)

                    return op

                for name in ("replace", "unlink", "rmdir", "rename"):
                    setattr(os, name, kill_first(getattr(os, name)))
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.WIFSIGNALED(status)


def test_a_kill_at_any_step_of_the_swap_never_leaves_a_manifest_of_missing_shards(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    steps = 0
    while True:
        shutil.rmtree(out, ignore_errors=True)
        with staged_output(out) as staging:
            make_shard_set(staging, n=10, shard_size=4)
        if not _killed_at(out, steps):
            break  # the swap ran to its end: every step was tried
        try:
            report = verify_shard_set(out)  # every listed shard there, digests equal
        except ShardError as err:
            assert f"{out} is not a shard set" in err.what and "rerun" in (err.fix or "")
        else:
            assert report.count in (10, 6)  # the old set whole, or the new one whole
        with staged_output(out, overwrite=True) as staging:  # the rerun completes the job
            make_shard_set(staging, n=6, shard_size=2, classes=("x", "y"))
        assert verify_shard_set(out).count == 6
        assert [p.name for p in tmp_path.iterdir()] == ["out"]  # the killed staging is gone
        steps += 1
    assert steps >= 8  # marker, manifest, 3 old shards, 3 new ones, ...
    assert read_manifest(out).count == 6


def test_rows_must_share_keys(tmp_path: Path) -> None:
    writer = ShardSetWriter(tmp_path, {})
    writer.add({"images": np.zeros((1, 2, 2), np.uint8), "index": 0})
    with pytest.raises(ValueError, match="differ"):
        writer.add({"images": np.zeros((1, 2, 2), np.uint8), "index": 1, "labels": 0})
