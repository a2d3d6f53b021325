"""`synmed data edges`: a shard set with masks -> its edge maps, as a conditioning shard set.

An edge map (DiffBoost's ControlNet condition) is the mask boundary joined with Canny edges of the
image, in [0, 1], stored as uint8 0/255 images (1, H, W) (grey values too with HED). The set has
one row per source row, in the source's order, with the source row's ``index`` (as ``index`` and
as ``source_index``) and its ``labels``, ``masks``, ``split``, ``source`` and ``group``, so a
generator sampled with ``--conditions EDGES`` writes images whose ``source_index`` names the real
image+mask row they were drawn for.

The mask boundary is DiffBoost's kernel (get_2dmask_boundary in
NUBagciLab/DiffBoost:segmentation/preprocess/utils.py): the magnitude of the mask's complex Scharr
gradient (real part d/dx, imaginary part d/dy, borders mirrored), clipped to [0, 1]. For integer
label maps every nonzero gradient has magnitude >= 1, so it marks the pixels on both sides of
every label change: the 3x3 morphological gradient (dilation minus erosion) except where opposite
neighbours cancel (a 1-pixel-wide line). The seed joins it with HED edges of the image; HED needs
a weights file the suite does not ship, so Canny (scikit-image) takes its place unless ``hed``
names a local weights file (:mod:`suite.data.hed`). The maps are joined by the seed's clip(sum),
which for the two binary maps is their pixel-wise max.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from tqdm import tqdm

import suite
from suite.artifacts.digests import sha256_file
from suite.data.shards import MANIFEST, STRING_DATASETS, Manifest, read_manifest
from suite.data.verify import verify_shard_set
from suite.data.writer import ShardSetWriter, staged_output
from suite.errors import ConfigError, ShardError

# DiffBoost's boundary kernel: Scharr d/dx in the real part, d/dy in the imaginary part
SCHARR_X = np.array([[-3, 0, 3], [-10, 0, 10], [-3, 0, 3]], dtype=np.float64)
SCHARR_Y = SCHARR_X.T.copy()
CARRIED = ("labels", "masks", "split", "source", "group")


@dataclass(frozen=True, slots=True)
class CannySettings:
    """scikit-image Canny on the image scaled to [0, 1]: Gaussian ``sigma`` (pixels), then
    hysteresis between ``low`` and ``high`` on the gradient magnitude."""

    sigma: float = 1.0
    low: float = 0.1
    high: float = 0.2

    def check(self) -> None:
        if not self.sigma >= 0:
            raise ConfigError(f"--canny-sigma {self.sigma} is negative", "pass 0 or more, e.g. 1")
        if not 0 <= self.low <= self.high:
            raise ConfigError(
                f"--canny-low {self.low} and --canny-high {self.high} are not 0 <= low <= high",
                "pass thresholds with low <= high, e.g. --canny-low 0.1 --canny-high 0.2",
            )


def mask_boundary(mask: np.ndarray) -> np.ndarray:
    """(H, W) label map -> (H, W) float32 in [0, 1]: |Scharr gradient| clipped at 1."""
    from scipy.ndimage import convolve

    data = mask.astype(np.float64)
    # scipy's "reflect" is scipy.signal's "symm": the edge pixel repeated, so the border of the
    # image is no boundary of a mask that touches it
    gx = convolve(data, SCHARR_X, mode="reflect")
    gy = convolve(data, SCHARR_Y, mode="reflect")
    return np.clip(np.hypot(gx, gy), 0.0, 1.0).astype(np.float32)


def canny_edges(image: np.ndarray, settings: CannySettings) -> np.ndarray:
    """(C, H, W) uint8 -> (H, W) float32 0/1 Canny edges of its luma."""
    from skimage.feature import canny

    plane = image.astype(np.float32)
    if plane.shape[0] == 3:  # ITU-R 601-2 luma, as ingest's RGB -> gray
        plane = plane[0] * 0.299 + plane[1] * 0.587 + plane[2] * 0.114
    else:
        plane = plane[0]
    edges = canny(
        plane / 255.0,
        sigma=settings.sigma,
        low_threshold=settings.low,
        high_threshold=settings.high,
        mode="nearest",  # zero padding would draw an edge along every bright border
    )
    return edges.astype(np.float32)


def join(boundary: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """(H, W) maps in [0, 1] -> (1, H, W) uint8: the seed's clip(sum), the max of binary maps."""
    return np.rint(np.clip(boundary + edges, 0.0, 1.0) * 255.0).astype(np.uint8)[None]


def edge_map(image: np.ndarray, mask: np.ndarray, settings: CannySettings) -> np.ndarray:
    """One row's edge map: (1, H, W) uint8, 255 on the mask boundary or a Canny edge."""
    return join(mask_boundary(mask[0]), canny_edges(image, settings))


def write_edge_set(
    source: Path,
    out: Path,
    *,
    canny: CannySettings | None = None,
    hed: Path | None = None,
    shard_size: int = 2048,
    compression: str = "lzf",
    overwrite: bool = False,
    progress: bool = True,
) -> Manifest:
    """Write the edge maps of every row of ``source`` (a set with masks) as the set ``out``.

    ``hed``: a local HED weights file; its edge probabilities replace Canny (as in the seed), and
    the map then holds grey values where HED is unsure.
    """
    settings = canny or CannySettings()
    settings.check()
    if shard_size < 1:
        raise ConfigError(f"--shard-size {shard_size} is below 1", "pass 1 or more, e.g. 2048")
    source, out = Path(source), Path(out)
    verify_shard_set(source)
    manifest = read_manifest(source)
    if not manifest.shards:
        raise ShardError(f"{source} has no rows", "pass a set with image+mask rows")
    with h5py.File(source / manifest.shards[0].file, "r") as h5:
        if "masks" not in h5:
            raise ShardError(
                f"{source} has no masks: an edge map joins the mask boundary with Canny edges",
                "pass a set with masks (ingest NIfTI with --mask, or an image_masks folder)",
            )
    attrs: dict[str, Any] = {
        key: manifest.attrs[key]
        for key in ("class_names", "label_kind", "mask_names")
        if key in manifest.attrs
    }
    network = None
    conditioning: dict[str, Any] = {"kind": "edges", "mask_boundary": "scharr"}
    if hed is not None:
        from suite.data.hed import load_hed

        network = load_hed(Path(hed))
        conditioning["hed"] = {"weights": str(Path(hed).resolve()), "sha256": sha256_file(hed)}
    else:
        conditioning["canny"] = {
            "sigma": settings.sigma,
            "low": settings.low,
            "high": settings.high,
        }
    attrs.update(
        source="conditioning",
        conditioning=conditioning,
        edges_of={
            "path": str(source.resolve()),
            "count": manifest.count,
            "manifest_sha256": sha256_file(source / MANIFEST),
        },
        synmed_version=suite.__version__,
    )
    with staged_output(out, overwrite=overwrite, inputs=[source]) as staging:
        writer = ShardSetWriter(staging, attrs, shard_size=shard_size, compression=compression)
        bar = tqdm(total=manifest.count, desc="edges", unit="img", disable=not progress)
        for rec in manifest.shards:
            with h5py.File(source / rec.file, "r") as h5:
                columns = {
                    k: h5[k].asstr()[:] if k in STRING_DATASETS else h5[k][:]
                    for k in ("images", "index", *CARRIED)
                    if k in h5
                }
            if network is not None:
                from suite.data.hed import hed_edges

                edges = hed_edges(network, columns["images"])
            for r in range(rec.count):
                row = {k: v[r] for k, v in columns.items() if k != "images"}
                image, mask = columns["images"][r], columns["masks"][r]
                row["images"] = (
                    join(mask_boundary(mask[0]), edges[r])
                    if network is not None
                    else edge_map(image, mask, settings)
                )
                row["source_index"] = row["index"]
                writer.add(row)
                bar.update(1)
        bar.close()
        result = writer.close()
    return result
