"""DICOM ingest on real files: pydicom-data's chest CR and pydicom's own test files."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.pixels import get_decoder
from pydicom.uid import JPEG2000Lossless

from suite.data.dataset import ShardDataset
from suite.data.ingest.adapters import resolve_adapter
from suite.data.ingest.base import Record
from suite.data.ingest.dicom import DicomAdapter
from suite.data.ingest.options import IngestOptions
from suite.data.ingest.pipeline import ingest
from suite.data.verify import verify_shard_set
from suite.errors import DataError
from tests.conftest import need


def _package_data(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        need(f"needs the {package!r} package (pip install 'synmed-suite[data]')")
    return Path(spec.submodule_search_locations[0]).joinpath(*parts)


# pydicom-data installs its files as the top-level package "data_store", not "pydicom_data"
STORE = _package_data("data_store", "data")
TESTS = _package_data("pydicom", "data", "test_files")
CHEST = STORE / "RG1_UNCR.dcm"  # PA chest CR, 1955x1841, 15-bit MONOCHROME1


def read(path: Path, **options) -> list[Record]:
    return list(DicomAdapter(path, IngestOptions(format="dicom", **options)).records())


def stored(path: Path) -> np.ndarray:
    return pydicom.dcmread(path).pixel_array


# -- the chest X-ray through the whole pipeline ------------------------------------------------


def _lung_and_spine(image: np.ndarray) -> tuple[float, float]:
    """Mean of both lung fields and of the spine/mediastinum column of a PA chest image."""
    h, w = image.shape
    rows = slice(int(0.23 * h), int(0.5 * h))
    lungs = [image[rows, int(a * w) : int(b * w)].ravel() for a, b in ((0.14, 0.34), (0.66, 0.86))]
    spine = image[rows, int(0.47 * w) : int(0.53 * w)]
    return float(np.concatenate(lungs).mean()), float(spine.mean())


@pytest.mark.parametrize("window", ["file", "none"])
def test_chest_xray_is_inverted_and_verifies(tmp_path: Path, window: str) -> None:
    out = tmp_path / "chest"
    opts = IngestOptions(format="dicom", image_size=256, dicom_window=window)
    manifest = ingest(CHEST, out, opts, progress=False)
    assert manifest.count == 1
    report = verify_shard_set(out)
    assert report.image_shape == (1, 256, 256)
    data = ShardDataset(out)
    assert data.read_column("group")[0] == "9RG1"  # the Patient ID
    image = data[0]["image"].numpy()[0]
    content = image[:, 7:248]  # 1955x1841 letterboxed to 256: 241 columns, 7 padded left
    assert content[:, 0].any() and not image[:, :7].any()
    # MONOCHROME1 stores air bright. After the adapter's inversion the air-filled lungs are darker
    # than spine and mediastinum (checked by eye on a saved PNG: bones white, lungs grey, air
    # above the shoulders black).
    lungs, spine = _lung_and_spine(content)
    assert spine > lungs + 40, (lungs, spine)
    raw_lungs, raw_spine = _lung_and_spine(stored(CHEST).astype(np.float32))
    assert raw_lungs > raw_spine  # the stored values have it the other way round


def test_monochrome1_raw_values_are_flipped() -> None:
    (record,) = read(CHEST, dicom_window="none")
    values = stored(CHEST).astype(np.float32)
    assert record.intensity == "raw"
    np.testing.assert_array_equal(record.image, values.min() + values.max() - values)


def test_file_window_maps_to_unit_range() -> None:
    (record,) = read(CHEST)  # WindowCenter 15000, WindowWidth 30000
    assert record.intensity == "unit" and record.image.dtype == np.float32
    assert 0.0 <= record.image.min() < record.image.max() <= 1.0
    values = stored(CHEST).astype(np.float32)
    # LINEAR window (PS3.3 C.11.2.1.2.1), then 1 - x for MONOCHROME1
    expected = 1.0 - np.clip((values - 14999.5) / 29999.0 + 0.5, 0.0, 1.0)
    np.testing.assert_allclose(record.image, expected, atol=1e-6)


# -- monochrome pipeline: rescale, windows, VOI LUT ---------------------------------------------


def test_ct_rescale_gives_hounsfield_units_and_is_not_inverted() -> None:
    path = TESTS / "CT_small.dcm"  # MONOCHROME2, RescaleIntercept -1024, no window
    (record,) = read(path)
    assert record.intensity == "raw" and record.group == "1CT1"
    np.testing.assert_array_equal(record.image, stored(path).astype(np.float32) - 1024.0)
    assert record.image.min() < -800  # air around the phantom, in HU


def test_manual_window_overrides_the_file() -> None:
    path = TESTS / "CT_small.dcm"
    (record,) = read(path, window_center=40, window_width=400)  # soft tissue, in HU
    hu = stored(path).astype(np.float32) - 1024.0
    assert record.intensity == "unit"
    assert np.all(record.image[hu <= -160.5] == 0.0) and np.all(record.image[hu > 239.5] == 1.0)
    inside = (hu > -150) & (hu < 230)
    assert inside.any() and np.corrcoef(hu[inside], record.image[inside])[0, 1] > 0.999
    (mr,) = read(TESTS / "MR_small.dcm", window_center=500, window_width=1000)
    assert mr.intensity == "unit"


def test_file_window_on_and_off_for_monochrome2() -> None:
    path = TESTS / "MR_small.dcm"  # MONOCHROME2 with WindowCenter/Width
    (windowed,) = read(path)
    (raw,) = read(path, dicom_window="none")
    assert windowed.intensity == "unit" and raw.intensity == "raw"
    np.testing.assert_array_equal(raw.image, stored(path).astype(np.float32))  # not inverted
    assert np.corrcoef(raw.image.ravel(), windowed.image.ravel())[0, 1] > 0.9


def test_voi_lut_sequence_and_enhanced_functional_groups() -> None:
    (voi,) = read(STORE / "vlut_04.dcm")  # a VOI LUT Sequence table
    assert voi.intensity == "unit" and voi.image.min() >= 0.0 and voi.image.max() <= 1.0
    # enhanced CT: rescale and window live in the shared functional groups (PS3.3 C.7.6.16)
    path = STORE / "eCT_Supplemental.dcm"
    frames = read(path, dicom_window="none")
    assert [r.source.rsplit("#", 1)[1] for r in frames] == ["frame1", "frame2"]
    np.testing.assert_array_equal(frames[0].image, stored(path)[0].astype(np.float32) - 1024.0)
    assert all(r.intensity == "unit" for r in read(path))


# -- multi-frame, colour, compression ------------------------------------------------------------


def test_multiframe_gives_one_record_per_frame(tmp_path: Path) -> None:
    path = STORE / "emri_small.dcm"  # 10 frames, 64x64 MR, no Patient ID
    records = read(path)
    assert len(records) == 10
    assert [r.source for r in records] == [f"{path}#frame{i}" for i in range(1, 11)]
    assert {r.group for r in records} == {str(path)}  # no Patient ID: grouped by file
    frames = stored(path)
    for i, record in enumerate(records):
        np.testing.assert_array_equal(record.image, frames[i].astype(np.float32))
    manifest = ingest(path, tmp_path / "out", IngestOptions(format="dicom"), progress=False)
    assert manifest.count == 10
    verify_shard_set(tmp_path / "out")


@pytest.mark.parametrize(
    "compressed",
    ["emri_small_jpeg_2k_lossless.dcm", "emri_small_jpeg_ls_lossless.dcm", "emri_small_RLE.dcm"],
)
def test_lossless_compressed_decodes_to_the_same_pixels(compressed: str) -> None:
    reference = read(STORE / "emri_small.dcm")
    decoded = read(STORE / compressed)
    assert len(decoded) == 10
    for a, b in zip(reference, decoded, strict=True):
        np.testing.assert_array_equal(a.image, b.image)


def test_jpeg2000_chest_and_jpeg_ls_mr() -> None:
    (j2k,) = read(STORE / "RG1_J2KR.dcm")  # the chest X-ray, JPEG 2000 lossless
    (unc,) = read(CHEST)
    np.testing.assert_array_equal(j2k.image, unc.image)
    (jls,) = read(TESTS / "MR_small_jpeg_ls_lossless.dcm")
    (mr,) = read(TESTS / "MR_small.dcm")
    np.testing.assert_array_equal(jls.image, mr.image)


def test_color_is_rgb_and_ybr_is_converted() -> None:
    (rgb,) = read(STORE / "US1_UNCR.dcm")
    (rct,) = read(STORE / "US1_J2KR.dcm")  # YBR_RCT: JPEG 2000 reversible colour transform
    assert rgb.image.shape == (480, 640, 3) and rgb.image.dtype == np.uint8
    np.testing.assert_array_equal(rgb.image, rct.image)
    (ybr,) = read(STORE / "SC_ybr_full_uncompressed.dcm")  # YBR_FULL, converted by pydicom
    (ref,) = read(STORE / "SC_rgb.dcm")
    diff = np.abs(ybr.image.astype(int) - ref.image.astype(int))
    assert diff.max() <= 8 and diff.mean() < 1  # 8-bit YBR rounding; unconverted Cb/Cr sit at ~128
    (jpeg,) = read(TESTS / "SC_rgb_jpeg_dcmtk.dcm")  # JPEG baseline, YBR_FULL
    assert np.abs(jpeg.image.astype(int) - ref.image.astype(int)).mean() < 1


def test_missing_decoder_names_file_syntax_and_install(monkeypatch: pytest.MonkeyPatch) -> None:
    decoder = get_decoder(JPEG2000Lossless)
    monkeypatch.setattr(decoder, "_available", {})
    path = STORE / "emri_small_jpeg_2k_lossless.dcm"
    with pytest.raises(DataError) as err:
        read(path)
    message = str(err.value)
    assert str(path) in message and "JPEG 2000 Image Compression (Lossless Only)" in message
    assert "pip install 'synmed-suite[dicom]'" in message


# -- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize("original", ["RG1_UNCR.dcm", "RG1_J2KR.dcm"])
def test_truncated_file_names_it_and_leaves_no_output(tmp_path: Path, original: str) -> None:
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(STORE / "US1_UNCR.dcm", src / "a_good.dcm")
    data = (STORE / original).read_bytes()
    (src / "half.dcm").write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    with pytest.raises(DataError) as err:
        ingest(src, out, IngestOptions(format="dicom", image_size=64), progress=False)
    assert str(src / "half.dcm") in str(err.value)
    assert "replace" in (err.value.fix or "")
    assert not out.exists()
    assert list(tmp_path.glob(".out*")) == []  # no staging folder left behind


def test_not_dicom_and_no_pixel_data(tmp_path: Path) -> None:
    (tmp_path / "notes.dcm").write_text("not a DICOM file")
    with pytest.raises(DataError, match="notes.dcm is not a DICOM file"):
        read(tmp_path / "notes.dcm")
    with pytest.raises(DataError, match="has no pixel data.*Basic Text SR"):
        read(TESTS / "reportsi.dcm")


def test_palette_color_is_refused_with_the_photometric(tmp_path: Path) -> None:
    path = TESTS / "examples_palette.dcm"
    with pytest.raises(DataError) as err:
        ingest(path, tmp_path / "out", IngestOptions(format="dicom"), progress=False)
    assert str(path) in str(err.value) and "PALETTE COLOR" in str(err.value)
    assert not (tmp_path / "out").exists()


def test_unsupported_bit_depth(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="Bits Allocated 1 is not supported"):
        read(TESTS / "liver_1frame.dcm")  # a 1-bit SEG


def test_manual_window_needs_both_values() -> None:
    with pytest.raises(DataError, match="needs both"):
        DicomAdapter(CHEST, IngestOptions(format="dicom", window_center=40))
    with pytest.raises(DataError, match="must be positive"):
        DicomAdapter(CHEST, IngestOptions(format="dicom", window_center=40, window_width=0))


# -- folders: discovery, labels, patient groups ----------------------------------------------------


def _study_folder(root: Path) -> Path:
    """Two class folders of real files; patient 4MR1 has three files, one without a suffix."""
    (root / "ct").mkdir(parents=True)
    (root / "mr" / "series2").mkdir(parents=True)
    shutil.copy(TESTS / "CT_small.dcm", root / "ct" / "CT_small.dcm")
    shutil.copy(STORE / "693_UNCR.dcm", root / "ct" / "head.DICOM")
    shutil.copy(TESTS / "MR_small.dcm", root / "mr" / "MR_small.dcm")
    shutil.copy(TESTS / "MR_small_RLE.dcm", root / "mr" / "series2" / "IM0001")  # DICM magic
    shutil.copy(TESTS / "MR_small_jp2klossless.dcm", root / "mr" / "1.2.840.99.3.1")  # UID name
    (root / "mr" / "README").write_text("not DICOM, no suffix: skipped")
    (root / "mr" / "notes.txt").write_text("skipped")
    shutil.copy(TESTS / "MR_small.dcm", root / "mr" / ".hidden.dcm")
    (root / "DICOMDIR").write_bytes(b"skipped by name")
    return root


def test_folder_discovery_and_sniff(tmp_path: Path) -> None:
    src = _study_folder(tmp_path / "study")
    adapter = DicomAdapter(src, IngestOptions(format="dicom"))
    names = sorted(p.name for p, _ in adapter.files)
    assert names == ["1.2.840.99.3.1", "CT_small.dcm", "IM0001", "MR_small.dcm", "head.DICOM"]
    assert adapter.info().label_kind == "none" and adapter.info().expected_count == 5
    assert adapter.info().split_policy == "group"
    assert DicomAdapter.sniff(src) and DicomAdapter.sniff(CHEST)
    assert DicomAdapter.sniff(src / "mr" / "series2" / "IM0001")
    assert resolve_adapter(src, "auto") is DicomAdapter
    assert not DicomAdapter.sniff(tmp_path / "study" / "mr" / "notes.txt")
    (tmp_path / "pngs" / "a").mkdir(parents=True)
    (tmp_path / "pngs" / "a" / "x.png").write_bytes(b"\x89PNG")
    assert not DicomAdapter.sniff(tmp_path / "pngs")


def test_class_folders_label_and_patients_stay_together(tmp_path: Path) -> None:
    src = _study_folder(tmp_path / "study")
    out = tmp_path / "out"
    opts = IngestOptions(format="dicom", image_size=64, class_names=["ct", "mr"], seed=1)
    manifest = ingest(src, out, opts, progress=False)
    assert manifest.count == 5 and manifest.class_names == ["ct", "mr"]
    verify_shard_set(out)
    data = ShardDataset(out)
    sources = list(data.read_column("source"))
    labels = dict(zip(sources, data.labels.tolist(), strict=True))
    assert labels["ct/CT_small.dcm"] == 0 and labels["mr/series2/IM0001"] == 1
    groups = data.read_column("group")
    split = data.read_column("split")
    assert sorted(set(groups)) == ["1CT1", "4MR1", "CQ500-CT-310"]
    for g in set(groups):
        assert len({int(s) for s, gg in zip(split, groups, strict=True) if gg == g}) == 1


def test_class_names_need_class_folders(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="needs a folder"):
        DicomAdapter(CHEST, IngestOptions(format="dicom", class_names=["a"]))
    src = _study_folder(tmp_path / "study")
    with pytest.raises(DataError, match="class folder mr is not in the class list"):
        DicomAdapter(src, IngestOptions(format="dicom", class_names=["ct"]))
    shutil.copy(CHEST, src / "loose.dcm")
    with pytest.raises(DataError, match="loose.dcm is not inside a class folder"):
        DicomAdapter(src, IngestOptions(format="dicom", class_names=["ct", "mr"]))


def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.txt").write_text("x")
    with pytest.raises(DataError, match="holds no DICOM files"):
        DicomAdapter(tmp_path / "empty", IngestOptions(format="dicom"))


def test_cli_ingests_the_chest_demo(tmp_path: Path) -> None:
    synmed = Path(sys.executable).with_name("synmed")
    cmd = [str(synmed)] if synmed.exists() else [sys.executable, "-m", "suite"]
    out = str(tmp_path / "chest")
    for args in (
        ["data", "ingest", "demo:chest-dicom", "--out", out, "--image-size", "64", "--quiet"],
        ["data", "verify", out],
    ):
        proc = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"ok {out}: 1 images")


def test_chest_demo_resolves() -> None:
    from suite.data.demo import resolve_source

    path, options = resolve_source("demo:chest-dicom")
    assert path == CHEST and options["format"] == "dicom"
