"""The report's figures, as PNG files (matplotlib, Agg canvas: no display, no global pyplot state).

Each function draws one figure from already-read data and returns whether it drew anything, so
the report links only figures that exist.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from suite.report.discover import TrainingRun

DPI = 120


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)  # attaches the Agg canvas: PNG rendering without any GUI backend
    return fig


def _save(fig: Figure, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, format="png")


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def curves(
    runs: list[tuple[str, TrainingRun]], key: str, ylabel: str, title: str, path: Path
) -> bool:
    """``key`` (``loss`` or ``knn_accuracy``) against step, one line per run."""
    fig = _figure(7, 4)
    ax = fig.subplots()
    drawn, positive = 0, True
    for name, run in runs:
        points = [(r["step"], r[key]) for r in run.records if _finite(r.get(key)) and "step" in r]
        if not points:
            continue
        steps, values = zip(*points)
        ax.plot(steps, values, lw=1.2, marker="o" if len(points) < 20 else None, ms=3, label=name)
        positive = positive and min(values) > 0
        drawn += 1
    if not drawn:
        return False
    if key == "loss" and positive:
        ax.set_yscale("log")  # losses fall over orders of magnitude
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    _save(fig, path)
    return True


def source_label(run: TrainingRun) -> str:
    """What a pretraining run read: its mix (``real``, ``real:0.5,synthetic:0.5``)."""
    mix = run.summary.get("mix")
    if not isinstance(mix, dict) or not mix:
        return "?"
    used = {k: v for k, v in mix.items() if _finite(v) and v > 0}
    return next(iter(used)) if len(used) == 1 else ",".join(f"{k}:{v:g}" for k, v in used.items())


def knn_by_source(runs: list[TrainingRun], title: str, path: Path) -> bool:
    """The kNN monitor against pretraining epoch, one line per source: the mean over that
    source's runs (its seeds) with a band of one standard deviation, so a reader sees where real
    and synthetic pretraining meet or part. Drawn only if some source has two runs or more."""
    groups: dict[str, list[TrainingRun]] = {}
    for run in runs:
        if any(_finite(r.get("knn_accuracy")) for r in run.records):
            groups.setdefault(source_label(run), []).append(run)
    if not any(len(g) > 1 for g in groups.values()):
        return False
    fig = _figure(7, 4)
    ax = fig.subplots()
    for label, members in sorted(groups.items()):
        by_epoch: dict[float, list[float]] = {}
        for run in members:
            for r in run.records:
                if _finite(r.get("knn_accuracy")) and _finite(r.get("epoch")):
                    by_epoch.setdefault(round(float(r["epoch"]), 3), []).append(r["knn_accuracy"])
        epochs = sorted(by_epoch)
        mean = np.array([np.mean(by_epoch[e]) for e in epochs])
        std = np.array([np.std(by_epoch[e]) for e in epochs])
        (line,) = ax.plot(
            epochs, mean, lw=1.5, marker="o", ms=3, label=f"{label} (n={len(members)})"
        )
        ax.fill_between(epochs, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    ax.set_xlabel("pretraining epoch")
    ax.set_ylabel("kNN accuracy (mean ± std over seeds)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    _save(fig, path)
    return True


def confusion_matrix(entry: dict[str, Any], title: str, path: Path) -> bool:
    """A single-label confusion matrix (rows true, columns predicted), counts summed over seeds,
    colour normalised per true class so small classes stay readable."""
    if entry.get("kind", "single") != "single":
        return False
    classes = [str(c) for c in entry.get("classes") or []]
    counts = np.asarray(entry.get("total") or [], dtype=np.float64)
    if not classes or counts.shape != (len(classes), len(classes)):
        return False
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    size = max(3.5, 0.6 * len(classes) + 2)
    fig = _figure(size + 1, size)
    ax = fig.subplots()
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    ticks = range(len(classes))
    ax.set_xticks(ticks, classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(ticks, classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if len(classes) <= 20:
        for i in ticks:
            for j in ticks:
                colour = "white" if share[i, j] > 0.5 else "black"
                ax.text(j, i, f"{counts[i, j]:.0f}", ha="center", va="center", color=colour,
                        fontsize=7)  # fmt: skip
    ax.set_title(title, fontsize=9)
    _save(fig, path)
    return True


def per_class_bars(per_class: dict[str, Any], metric: str, title: str, path: Path) -> bool:
    """``metric`` per class, one bar group per class and one bar per protocol, std as error bars."""
    protocols = [p for p, classes in per_class.items() if isinstance(classes, dict) and classes]
    if not protocols:
        return False
    classes = list(dict.fromkeys(c for p in protocols for c in per_class[p]))
    width = 0.8 / len(protocols)
    fig = _figure(max(5, 0.5 * len(classes) * len(protocols) + 2), 3.8)
    ax = fig.subplots()
    x = np.arange(len(classes))
    drawn = False
    for k, protocol in enumerate(protocols):
        means, stds = [], []
        for cls in classes:
            m = per_class[protocol].get(cls, {}).get(metric)
            mean = m.get("mean") if isinstance(m, dict) else m
            std = m.get("std") if isinstance(m, dict) else None
            means.append(mean if _finite(mean) else np.nan)
            stds.append(std if _finite(std) else 0.0)
        drawn = drawn or any(np.isfinite(means))
        ax.bar(x + (k - (len(protocols) - 1) / 2) * width, means, width, yerr=stds, capsize=2,
               label=protocol)  # fmt: skip
    if not drawn:
        return False
    ax.set_xticks(x, classes, rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(metric)
    ax.set_title(title, fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    _save(fig, path)
    return True


def metric_vs_steps(
    points: list[tuple[str, int, float]], metric: str, title: str, path: Path
) -> bool:
    """(sampler, steps, value) points: one line per sampler, steps on a log axis."""
    by_sampler: dict[str, list[tuple[int, float]]] = {}
    for sampler, steps, value in points:
        by_sampler.setdefault(sampler, []).append((steps, value))
    if len({s for _, s, _ in points}) < 2:
        return False  # one step count is a point, not a trend
    fig = _figure(6, 4)
    ax = fig.subplots()
    for sampler, pts in sorted(by_sampler.items()):
        steps, values = zip(*sorted(pts))
        ax.plot(steps, values, marker="o", label=sampler)
    ax.set_xscale("log")
    ax.set_xlabel("sampling steps")
    ax.set_ylabel(metric)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    _save(fig, path)
    return True


def f1_against_step(points: list[tuple[int, float | None, float | None]], title: str,
                    path: Path) -> bool:  # fmt: skip
    """(training step, macro F1, micro F1) points of a self-validation sweep: two lines."""
    points = sorted(points)
    fig = _figure(6, 4)
    ax = fig.subplots()
    drawn = False
    for column, label, style in ((1, "macro F1", "-"), (2, "micro F1 (= accuracy)", "--")):
        pts = [(p[0], p[column]) for p in points if _finite(p[column])]
        if pts:
            steps, values = zip(*pts)
            ax.plot(steps, values, style, marker="o", label=label)
            drawn = True
    if not drawn:
        return False
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("training step (checkpoint)")
    ax.set_ylabel("F1")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)
    return True


def _tile(images: list[np.ndarray], cols: int) -> np.ndarray:
    """(C, H, W) uint8 images side by side in rows of ``cols``, 2 px gaps, as (H, W, 3)."""
    c, h, w = images[0].shape
    rows = math.ceil(len(images) / cols)
    grid = np.full((rows * (h + 2), cols * (w + 2), 3), 255, np.uint8)
    for i, image in enumerate(images):
        r, k = divmod(i, cols)
        rgb = np.repeat(image, 3, axis=0) if image.shape[0] == 1 else image[:3]
        grid[r * (h + 2) + 1 : r * (h + 2) + 1 + h, k * (w + 2) + 1 : k * (w + 2) + 1 + w] = (
            rgb.transpose(1, 2, 0)
        )
    return grid


def _rows_by_class(ds: Any, names: list[str], per_class: int) -> list[np.ndarray]:
    """Positions of the first ``per_class`` rows of each class (all classes from one draw)."""
    labels = np.asarray(ds.labels)
    out = []
    for c in range(len(names)):
        hit = labels[:, c] > 0.5 if labels.ndim == 2 else labels == c
        out.append(np.flatnonzero(hit)[:per_class])
    return out


def sample_grid(
    real: Path, fake: Path, path: Path, *, per_class: int = 6, max_classes: int = 8
) -> bool:
    """Real images (left) beside synthetic ones (right); one row per shared class when both sets
    are labelled with the same class names, else a few rows of each."""
    from suite.data.dataset import ShardDataset

    # "size" checks the files exist at their recorded size; a picture does not justify hashing
    # every shard of a 100k-image set (the evaluations that produced the numbers did that)
    real_ds = ShardDataset(real, verify="size")
    fake_ds = ShardDataset(fake, verify="size")
    if not len(real_ds) or not len(fake_ds):
        return False
    shared = [n for n in real_ds.class_names if n in fake_ds.class_names][:max_classes]
    labelled = shared and real_ds.labels is not None and fake_ds.labels is not None
    panels: list[tuple[str, np.ndarray]] = []
    row_names: list[str] = []
    for title, ds in (("real: " + real.name, real_ds), ("synthetic: " + fake.name, fake_ds)):
        if labelled:
            order = [ds.class_names.index(n) for n in shared]
            by_class = _rows_by_class(ds, ds.class_names, per_class)
            images = []
            for c in order:
                rows = [ds[int(p)]["image"].numpy() for p in by_class[c]]
                blank = np.zeros_like(ds[0]["image"].numpy())
                images += rows + [blank] * (per_class - len(rows))
            row_names = shared
        else:
            count = min(len(ds), per_class * 4)
            images = [ds[i]["image"].numpy() for i in range(count)]
        panels.append((title, _tile(images, per_class)))
    fig = _figure(9, max(3.0, 0.7 * (len(row_names) or 4) + 1))
    axes = fig.subplots(1, 2)
    for ax, (title, grid) in zip(axes, panels):
        ax.imshow(grid, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        if row_names:
            h = grid.shape[0] / len(row_names)
            ax.set_yticks([(i + 0.5) * h for i in range(len(row_names))], row_names, fontsize=8)
        else:
            ax.set_yticks([])
    _save(fig, path)
    return True
