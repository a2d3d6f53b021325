"""What integration tests share: running the CLI as a user does, waiting, real demo shard sets."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from suite.data.demo import resolve_source
from suite.data.ingest.options import IngestOptions
from suite.data.ingest.pipeline import ingest

REPO = Path(__file__).resolve().parents[2]
# One thread per process (tests run several at once on 2 cores); no progress bars in captured output.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}


def synmed(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`python -m suite ARGS` in a fresh process, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "suite", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ENV,
    )


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, poll: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(poll)


def demo_shards(name: str, out: Path, **options) -> Path:
    """Ingest a demo:NAME source (real data shipped in installed packages) into ``out``."""
    path, defaults = resolve_source(f"demo:{name}")
    ingest(path, out, IngestOptions(**{**defaults, **options}), progress=False)
    return out
