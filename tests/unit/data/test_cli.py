"""`synmed data ...` from the command line: outputs that are inputs, a file-size limit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from tests.unit.data.helpers import make_class_folders

REPO = Path(__file__).resolve().parents[3]


def synmed(*args: str, limit_kb: int | None = None) -> subprocess.CompletedProcess:
    """``python -m suite ARGS``, under ``ulimit -f`` when a limit is given."""
    command = " ".join(f"'{a}'" for a in (sys.executable, "-m", "suite", *args))
    prefix = f"ulimit -f {limit_kb}; " if limit_kb is not None else ""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        ["bash", "-c", prefix + "exec " + command],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip


def test_ingest_into_its_own_source_with_overwrite_deletes_nothing(tmp_path: Path) -> None:
    src = make_class_folders(tmp_path / "src")
    before = sorted(p for p in src.rglob("*") if p.is_file())
    result = synmed("data", "ingest", str(src), "--out", str(src), "--overwrite", "--quiet")
    assert result.returncode == 2, result.stderr
    assert f"output {src} is the input {src}" in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p for p in src.rglob("*") if p.is_file()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]  # no staging folder


def test_a_file_size_limit_is_one_message_and_no_staging(tmp_path: Path) -> None:
    src = tmp_path / "src"
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (src / label).mkdir(parents=True)
        for i in range(16):  # 32 x 4 KiB of noise: more than the 64 KiB limit, even as LZF
            Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8)).save(
                src / label / f"{i}.png"
            )
    out = tmp_path / "out"
    args = ("data", "ingest", str(src), "--out", str(out), "--quiet")
    result = synmed(*args, limit_kb=64)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert (
        len(lines) == 2 and lines[0].startswith("error: writing ") and "file too large" in lines[0]
    )
    assert str(tmp_path) in lines[0] and "ulimit -f" in lines[1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]  # no output, no staging
    result = synmed(*args)  # the same command without the limit
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout and (out / "manifest.json").is_file()
