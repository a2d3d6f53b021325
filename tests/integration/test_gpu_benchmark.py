"""benchmarks/gpu.py, the one command a GPU session runs, passes through every benchmark it lists
at tiny sizes on this CPU (its dry pass), so a GPU's minutes are not spent finding a broken path."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
GPU = REPO / "benchmarks" / "gpu.py"
SCRIPTS = re.findall(r'Bench\("(bench_\w+\.py)"', GPU.read_text())


@pytest.mark.slow
def test_the_dry_pass_runs_every_benchmark_and_prints_their_figures() -> None:
    assert len(SCRIPTS) == 6 and all((REPO / "benchmarks" / s).is_file() for s in SCRIPTS)
    proc = subprocess.run(
        [sys.executable, str(GPU), "--dry"],
        capture_output=True,
        text=True,
        timeout=1500,
        cwd=REPO,
    )
    out = proc.stdout
    assert proc.returncode == 0, out[-6000:] + proc.stderr[-3000:]
    summary = out[out.rindex("| benchmark | status | seconds |") :]
    for script in SCRIPTS:
        assert re.search(rf"^\| {re.escape(script)} \| ok \| \d+ \|$", summary, re.M), summary
    # each benchmark's headline figures reached the output
    assert re.search(r"^\| ddpm_lucidrains .* \| 0\.\d{3} \|$", out, re.M)  # FLOP/s fraction
    assert "speed-up over the plain call" in out  # the levers
    for ratio in ("suite/lucidrains", "suite/lightly", "suite/examples", "ray/bare",
                  "suite/diffusers", "shard/ImageFolder"):  # fmt: skip
        assert re.search(rf"ratio {re.escape(ratio)}.*: \d+\.\d+x", out), ratio


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without CUDA")
def test_without_a_gpu_the_realistic_pass_is_refused_with_the_dry_flag_named() -> None:
    proc = subprocess.run(
        [sys.executable, str(GPU)], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert proc.returncode == 2 and "pass --dry" in proc.stderr
