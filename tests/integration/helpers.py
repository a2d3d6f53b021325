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


def synmed(
    *args: str, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m suite ARGS` in a fresh process (environment ``env``, else ``ENV``), output
    captured."""
    return subprocess.run(
        [sys.executable, "-m", "suite", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ENV if env is None else env,
    )


def synmed_on_two_gloo_ranks(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`accelerate launch` of `python -m suite ARGS` on two CPU processes (gloo), output
    captured."""
    accelerate = Path(sys.executable).with_name("accelerate")
    return subprocess.run(
        [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
         "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "suite", *args],
        capture_output=True, text=True, timeout=timeout, env=ENV,
    )  # fmt: skip


def synmed_here(capsys: pytest.CaptureFixture[str], *args: str) -> subprocess.CompletedProcess[str]:
    """`synmed ARGS` in this process (``suite.cli.main``, output through ``capsys``), as
    :func:`synmed` returns it. For a command that only refuses or finds everything done, where a
    fresh interpreter's imports would be most of its time; the test that uses it runs the same
    command through :func:`synmed` too, so the process path stays covered."""
    from suite.cli import main

    before = capsys.readouterr()  # what the test printed before is not this command's output
    code = main(list(args))
    out = capsys.readouterr()
    sys.stdout.write(before.out)  # put back, for the report of a failing test
    sys.stderr.write(before.err)
    return subprocess.CompletedProcess(["synmed", *args], code, out.out, out.err)


def own_ray_env() -> dict[str, str]:
    """``ENV`` without ``RAY_ADDRESS``: a command run with it starts (and stops) a local Ray of its
    own, as a user's does, even in a test that has the session's Ray joined (``joined_ray``)."""
    return {key: value for key, value in ENV.items() if key != "RAY_ADDRESS"}


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


def kill_session(leader: int, timeout: float = 30) -> None:
    """SIGKILL every process of the session ``leader`` heads (a Popen with start_new_session=True):
    its process group at once, then any process that left the group but not the session (Ray's
    workers and daemons each sit in a group of their own). Returns when none is left alive."""
    import contextlib
    import signal

    import psutil

    def members() -> list[int]:
        alive = []
        for pid in psutil.pids():
            try:
                if os.getsid(pid) == leader and psutil.Process(pid).status() != "zombie":
                    alive.append(pid)
            except (ProcessLookupError, PermissionError, psutil.Error):
                pass
        return alive

    with contextlib.suppress(ProcessLookupError):
        os.killpg(leader, signal.SIGKILL)
    for pid in members():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not members(), timeout, f"the processes of session {leader} to die")
