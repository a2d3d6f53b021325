"""2D image+mask folders (the BUSI layout) end to end, and their bad-input errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from suite.data.dataset import ShardDataset
from suite.data.ingest.adapters import resolve_adapter
from suite.data.ingest.image_masks import ImageMasksAdapter
from suite.data.ingest.options import IngestOptions
from suite.data.ingest.pipeline import ingest
from suite.errors import DataError
from tests.unit.data.helpers import make_busi, save_png, square


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "suite", *args], capture_output=True, text=True, timeout=120
    )


def test_busi_layout_is_sniffed_and_pairs_stay_aligned(tmp_path: Path) -> None:
    src = make_busi(tmp_path / "busi")
    assert resolve_adapter(src, "auto") is ImageMasksAdapter
    manifest = ingest(src, tmp_path / "out", IngestOptions(), progress=False)
    assert manifest.count == 6 and manifest.class_names == ["benign", "malignant"]
    assert manifest.attrs["mask_names"] == ["background", "foreground"]
    data = ShardDataset(tmp_path / "out")
    sources = list(data.read_column("source"))
    assert not any("_mask" in s for s in sources)  # masks are not images
    for row, source in enumerate(sources):
        sample = data[row]
        image, mask = sample["image"][0].numpy(), sample["mask"][0].numpy()
        assert set(np.unique(mask)) <= {0, 1}
        if source != "benign/benign (1).png":  # its second mask has no bright square
            np.testing.assert_array_equal(image > 100, mask == 1)
    first = data[sources.index("benign/benign (1).png")]
    mask = first["mask"][0].numpy()
    assert mask[2:8, 3:10].all() and mask[12:15, 12:15].all()  # both masks, merged by union
    assert int(mask.sum()) == 6 * 7 + 3 * 3
    assert data[sources.index("malignant/malignant (2).png")]["label"] == 1


@pytest.mark.parametrize(
    ("aspect", "shape", "box"),
    [
        ("pad", (24, 32), (4, 8, 12, 24)),  # scaled by 1/2 to 12x16, 2 rows padded above
        ("crop", (32, 48), (8, 16, 24, 32)),  # scaled by 1/2 to 16x24, 4 columns cropped left
        ("stretch", (32, 16), (8, 4, 24, 12)),  # rows halved, columns kept
    ],
)
def test_mask_follows_the_image_under_each_aspect(
    tmp_path: Path, aspect: str, shape: tuple[int, int], box: tuple[int, int, int, int]
) -> None:
    src = tmp_path / "src"
    save_png(src / "a" / "x.png", square(shape, box))
    save_png(src / "a" / "x_mask.png", square(shape, box))
    ingest(src, tmp_path / "out", IngestOptions(image_size=16, aspect=aspect), progress=False)
    sample = ShardDataset(tmp_path / "out")[0]
    image, mask = sample["image"][0].numpy(), sample["mask"][0].numpy()
    bottom = 8 if aspect == "pad" else 12
    assert mask[4:bottom, 4:12].all()  # the box, moved and scaled as the image was
    assert int(mask.sum()) == (bottom - 4) * 8
    inside = mask == 1
    assert image[inside].min() > 127 and image[~inside].max() < 128


def test_min_mask_pixels_counts_at_the_stored_size(tmp_path: Path) -> None:
    src = make_busi(tmp_path / "busi")
    # masks hold 42 + 9, 42 (benign) and 42 pixels (malignant); drop only those under 50
    ingest(src, tmp_path / "out", IngestOptions(min_mask_pixels=50), progress=False)
    assert list(ShardDataset(tmp_path / "out").read_column("source")) == ["benign/benign (1).png"]
    with pytest.raises(DataError, match=r"all 6 images were dropped.*largest mask has 51") as err:
        ingest(src, tmp_path / "none", IngestOptions(min_mask_pixels=52), progress=False)
    assert "--min-mask-pixels 51 or less" in err.value.fix
    assert not (tmp_path / "none").exists()


def test_min_mask_pixels_needs_masks(tmp_path: Path) -> None:
    src = tmp_path / "src"
    save_png(src / "a" / "x.png", np.zeros((16, 16), np.uint8))
    with pytest.raises(DataError, match="has no masks"):
        ingest(src, tmp_path / "out", IngestOptions(min_mask_pixels=1), progress=False)
    assert not (tmp_path / "out").exists()


def test_mask_of_another_size_is_one_error(tmp_path: Path) -> None:
    src = make_busi(tmp_path / "busi")
    save_png(src / "malignant" / "malignant (2)_mask.png", np.zeros((12, 16), np.uint8))
    out = tmp_path / "out"
    with pytest.raises(DataError, match=r"malignant \(2\)_mask.png is 16x12 but its image") as err:
        ingest(src, out, IngestOptions(), progress=False)
    assert "malignant (2).png is 16x16" in str(err.value)
    assert "nearest neighbour" in err.value.fix
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_image_without_mask_is_an_error_unless_allowed(tmp_path: Path) -> None:
    src = make_busi(tmp_path / "busi")
    (src / "benign" / "benign (2)_mask.png").unlink()
    out = tmp_path / "out"
    with pytest.raises(DataError, match=r"image .*benign \(2\).png has no mask") as err:
        ingest(src, out, IngestOptions(format="image_masks"), progress=False)
    assert "--missing-masks empty" in err.value.fix
    assert not out.exists()
    ingest(src, out, IngestOptions(missing_masks="empty"), progress=False)
    data = ShardDataset(out)
    row = list(data.read_column("source")).index("benign/benign (2).png")
    assert int(data[row]["mask"].sum()) == 0


def test_mask_without_image_is_an_error(tmp_path: Path) -> None:
    src = make_busi(tmp_path / "busi")
    (src / "malignant" / "malignant (3).png").unlink()
    result = run_cli("data", "ingest", str(src), "--out", str(tmp_path / "out"), "--quiet")
    assert result.returncode == 2
    assert "malignant (3)_mask.png has no image malignant (3).png" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_zero_one_mask_is_an_error_naming_the_threshold(tmp_path: Path) -> None:
    src = tmp_path / "src"
    save_png(src / "a" / "x.png", np.zeros((16, 16), np.uint8))
    save_png(src / "a" / "x_mask.png", square((16, 16), (0, 0, 4, 4)) // 255)  # 0/1 values
    with pytest.raises(DataError, match=r"x_mask.png has pixels above 0 but none") as err:
        ingest(src, tmp_path / "out", IngestOptions(), progress=False)
    assert not (tmp_path / "out").exists()
    fix = err.value.fix.split("--mask-threshold ")[1].split()[0]
    ingest(src, tmp_path / "out", IngestOptions(mask_threshold=float(fix)), progress=False)
    assert int(ShardDataset(tmp_path / "out")[0]["mask"].sum()) == 16


def test_mask_names_must_be_two(tmp_path: Path) -> None:
    src = make_busi(tmp_path / "busi")
    with pytest.raises(DataError, match="masks are binary"):
        ImageMasksAdapter(src, IngestOptions(mask_names=["bg", "a", "b"]))
    adapter = ImageMasksAdapter(src, IngestOptions(mask_names=["background", "lesion"]))
    assert adapter.info().mask_names == ["background", "lesion"]
