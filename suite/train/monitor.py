"""What a user watches during training: a metrics log, sample grids, a loss curve, a summary."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from suite.artifacts.files import atomic_write_text

METRICS = "metrics.jsonl"


class MetricsLog:
    """Append-only JSON lines, one per logged step; on resume, lines past the resumed step go."""

    def __init__(self, run_dir: Path, resume_step: int | None) -> None:
        self.path = run_dir / METRICS
        if self.path.exists():
            keep = (
                []
                if resume_step is None
                else [
                    line
                    for line in self.path.read_text().splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= resume_step
                ]
            )
            atomic_write_text(self.path, "".join(line + "\n" for line in keep))

    def write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]


def save_grid(images: torch.Tensor, path: Path) -> None:
    """Save (N, C, H, W) images in [0, 1] as one PNG grid, about square."""
    n, c, h, w = images.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    pixels = (images.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    grid = np.zeros((rows * (h + 2), cols * (w + 2), c), np.uint8)
    for i in range(n):
        r, k = divmod(i, cols)
        grid[r * (h + 2) + 1 : r * (h + 2) + 1 + h, k * (w + 2) + 1 : k * (w + 2) + 1 + w] = pixels[
            i
        ].transpose(1, 2, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid[..., 0] if c == 1 else grid).save(path)


def save_loss_curve(records: list[dict[str, Any]], path: Path, title: str) -> None:
    """Loss against step (log scale), from the metrics log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in records if "loss" in r]
    losses = [r["loss"] for r in records if "loss" in r]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    ax.plot(steps, losses, lw=1)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    if losses and min(losses) > 0:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def throughput_line(summary: dict[str, Any]) -> str:
    """The summary's speed and data-wait share, for a command's closing lines ('' if absent)."""
    if summary.get("data_wait_fraction") is None:
        return ""
    return (
        f"  {summary['seconds']:.0f} s, {summary['images_per_s']:.1f} images/s, "
        f"{summary['data_wait_fraction']:.1%} of it waiting on data"
    )


def write_summary(path: Path, summary: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(summary, indent=1))
