"""Atomic writes (suite/artifacts/files.py): whole files or none, one process's temporary file
apart from another's."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from suite.artifacts.files import atomic_write_text


def _write_many(path: str, text: str, times: int) -> None:
    for _ in range(times):
        atomic_write_text(Path(path), text)


def test_two_processes_writing_one_file_leave_one_whole_file(tmp_path: Path) -> None:
    """Two folds of a run, run side by side, both write the run's run.yaml: neither may find its
    temporary file taken from under it, and the file is one writer's text, whole."""
    path = tmp_path / "run.yaml"
    texts = ["a" * 100_000, "b" * 50_000]
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_write_many, args=(str(path), t, 200)) for t in texts]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    assert path.read_text() in texts
    assert not list(tmp_path.glob("*.tmp"))
