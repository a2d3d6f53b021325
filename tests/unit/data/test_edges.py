"""Edge maps: DiffBoost's mask-boundary kernel joined with Canny, written as a conditioning set."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import binary_dilation, binary_erosion

from suite.data.dataset import ShardDataset
from suite.data.edges import CannySettings, canny_edges, edge_map, mask_boundary, write_edge_set
from suite.data.verify import verify_shard_set
from suite.errors import ConfigError, ShardError
from tests.unit.data.helpers import make_busi, make_shard_set, make_square_mask_set


def test_boundary_is_the_morphological_gradient_of_a_filled_shape() -> None:
    mask = np.zeros((16, 16), np.uint8)
    mask[4:11, 3:12] = 1
    mask[2:5, 6:9] = 1  # a bump: concave corners too
    edge = mask_boundary(mask)
    assert set(np.unique(edge)) == {0.0, 1.0}
    square = np.ones((3, 3), bool)
    gradient = binary_dilation(mask, square) & ~binary_erosion(mask, square, border_value=1)
    np.testing.assert_array_equal(edge == 1, gradient)


def test_boundary_of_labels_and_at_the_border() -> None:
    labels = np.zeros((8, 8), np.uint8)
    labels[:, 4:] = 2  # two labels meeting, both touching the image border
    edge = mask_boundary(labels)
    assert edge[:, 3:5].all() and edge[:, :3].sum() == 0 and edge[:, 5:].sum() == 0
    assert mask_boundary(np.ones((8, 8), np.uint8)).sum() == 0  # mirrored border: no edge


def test_canny_finds_the_square_and_nothing_on_flat_borders() -> None:
    image = np.full((1, 16, 16), 20, np.uint8)
    image[0, 4:12, 4:12] = 220
    edges = canny_edges(image, CannySettings())
    assert edges[4:12, 4:12].sum() > 0 and edges[0, :].sum() == 0 and edges[:, 0].sum() == 0
    assert canny_edges(np.full((3, 16, 16), 90, np.uint8), CannySettings()).sum() == 0


def test_edge_map_joins_boundary_and_canny() -> None:
    image = np.full((1, 16, 16), 20, np.uint8)
    image[0, 1:4, 1:4] = 220  # an edge that no mask has
    mask = np.zeros((1, 16, 16), np.uint8)
    mask[0, 8:14, 8:14] = 1  # a mask the flat image does not show
    out = edge_map(image, mask, CannySettings())
    assert out.shape == (1, 16, 16) and out.dtype == np.uint8
    assert set(np.unique(out)) == {0, 255}
    assert out[0, 7:15, 7:15].any() and out[0, :5, :5].any()
    np.testing.assert_array_equal(
        out[0, 7:15, 7:15] == 255, mask_boundary(mask[0])[7:15, 7:15] == 1
    )


def test_edge_set_keeps_rows_paired(tmp_path: Path) -> None:
    src = make_square_mask_set(tmp_path / "src")
    manifest = write_edge_set(src, tmp_path / "edges", progress=False)
    verify_shard_set(tmp_path / "edges")
    assert manifest.attrs["source"] == "conditioning"
    assert manifest.attrs["conditioning"]["mask_boundary"] == "scharr"
    real, edges = ShardDataset(src), ShardDataset(tmp_path / "edges")
    assert len(edges) == len(real) == 6
    assert list(edges.read_column("source_index")) == list(range(100, 106))
    for name in ("split", "source", "group"):
        assert list(edges.read_column(name)) == list(real.read_column(name))
    for i in range(len(real)):
        r, e = real[i], edges[i]
        assert e["index"] == r["index"] and e["label"] == r["label"]
        assert np.array_equal(e["mask"], r["mask"])
        expected = mask_boundary(r["mask"][0].numpy()) == 1
        # the square's own Canny edges lie on its mask boundary: the map is the boundary
        assert ((e["image"][0].numpy() == 255) <= expected).all()
        assert (e["image"][0].numpy()[expected] == 255).mean() > 0.9


def test_set_without_masks_is_refused(tmp_path: Path) -> None:
    src = make_shard_set(tmp_path / "src", n=4)
    with pytest.raises(ShardError, match="has no masks"):
        write_edge_set(src, tmp_path / "edges", progress=False)
    assert not (tmp_path / "edges").exists()


def test_bad_canny_thresholds_via_cli(tmp_path: Path) -> None:
    src = make_square_mask_set(tmp_path / "src")
    with pytest.raises(ConfigError, match="not 0 <= low <= high"):
        write_edge_set(src, tmp_path / "e", canny=CannySettings(1.0, 0.3, 0.2), progress=False)
    result = subprocess.run(
        [sys.executable, "-m", "suite", "data", "edges", str(src), "--out", str(tmp_path / "e"),
         "--canny-sigma", "-1", "--quiet"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2 and "--canny-sigma -1.0 is negative" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "e").exists()


def test_busi_folder_to_edges_via_cli(tmp_path: Path) -> None:
    src = make_busi(tmp_path / "busi")
    run = [sys.executable, "-m", "suite", "data"]
    ingest = subprocess.run(
        [*run, "ingest", str(src), "--out", str(tmp_path / "pairs"), "--image-size", "16",
         "--quiet"], capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert ingest.returncode == 0, ingest.stderr
    result = subprocess.run(
        [*run, "edges", str(tmp_path / "pairs"), "--out", str(tmp_path / "edges"), "--quiet"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "wrote 6 edge maps" in result.stdout
    pairs, edges = ShardDataset(tmp_path / "pairs"), ShardDataset(tmp_path / "edges")
    assert list(edges.read_column("source_index")) == [pairs[i]["index"] for i in range(6)]
    for i in range(6):  # every mask's outline is in its edge map
        outline = mask_boundary(pairs[i]["mask"][0].numpy()) == 1
        assert (edges[i]["image"][0].numpy()[outline] == 255).all()
