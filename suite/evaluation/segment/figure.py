"""The PNG of a few validation cases: image, truth overlay, prediction overlay (one row per case)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def overlay_figure(
    images: np.ndarray,
    truths: np.ndarray,
    preds: np.ndarray,
    class_names: list[str],
    path: Path,
    *,
    titles: list[str] | None = None,
) -> Path:
    """Write ``path``: images ``(N, C, H, W)`` uint8, label maps ``(N, H, W)``; background clear."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on cluster nodes
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    n = len(images)
    colours = plt.get_cmap("tab10").colors[: max(len(class_names) - 1, 1)]
    cmap = ListedColormap([(0, 0, 0, 0), *[(*c, 0.5) for c in colours]])
    fig, axes = plt.subplots(n, 3, figsize=(7.5, 2.5 * n), squeeze=False)
    for row in range(n):
        image = images[row]
        shown = image[0] if image.shape[0] == 1 else np.moveaxis(image, 0, -1)
        for col, (labels, name) in enumerate(
            ((None, "image"), (truths[row], "truth"), (preds[row], "prediction"))
        ):
            ax = axes[row, col]
            ax.imshow(shown, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            if labels is not None:
                ax.imshow(
                    labels, cmap=cmap, vmin=0, vmax=len(class_names) - 1, interpolation="nearest"
                )
            ax.set_axis_off()
            title = name if titles is None or col else f"{titles[row]}"
            ax.set_title(title, fontsize=8)
    legend = ", ".join(f"{i}={n_}" for i, n_ in enumerate(class_names) if i)
    fig.suptitle(f"validation cases (classes: {legend})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
