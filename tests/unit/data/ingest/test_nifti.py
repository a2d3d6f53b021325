"""NIfTI ingest on real data: nilearn's MNI152 T1 template with its grey/white-matter maps."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from suite.data.dataset import ShardDataset
from suite.data.demo import resolve_source
from suite.data.ingest.adapters import resolve_adapter
from suite.data.ingest.base import Record
from suite.data.ingest.nifti import NiftiAdapter
from suite.data.ingest.options import IngestOptions
from suite.data.ingest.pipeline import ingest
from suite.data.ingest.splits import SLABS_PER_VOLUME
from suite.data.verify import verify_shard_set
from suite.errors import DataError
from tests.conftest import need_module

need_module("nilearn", "its MNI152 files are the data here: pip install 'synmed-suite[data]'")

T1, DEMO = resolve_source("demo:mni152")
GM, WM = (Path(m) for m in DEMO["mask"])
NAMES = DEMO["mask_names"]  # background, gm, wm


def options(**kwargs) -> IngestOptions:
    return IngestOptions(format="nifti", **kwargs)


def read(source: Path, **kwargs) -> list[Record]:
    return list(NiftiAdapter(source, options(**kwargs)).records())


def slice_index(source: str) -> int:
    return int(source.rsplit("#slice", 1)[1])


@pytest.fixture(scope="module")
def tissue_labels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The GM/WM maps as one integer label volume, computed here independently of the adapter."""
    gm, wm = (np.asarray(nib.load(p).dataobj, dtype=np.float32) / 255.0 for p in (GM, WM))
    labels = np.where(np.maximum(gm, wm) >= 0.5, np.where(wm > gm, 2, 1), 0).astype(np.uint8)
    path = tmp_path_factory.mktemp("labels") / "tissue.nii.gz"
    nib.save(nib.Nifti1Image(labels, nib.load(T1).affine), path)
    return path


@pytest.fixture(scope="module")
def mni_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mni") / "set"
    opts = options(mask=[GM, WM], mask_names=NAMES, axis=2, image_size=64)
    ingest(T1, out, opts, progress=False)
    return out


def test_mni152_with_tissue_maps_verifies(mni_set: Path) -> None:
    report = verify_shard_set(mni_set)
    assert 100 <= report.count <= 200 and report.image_shape == (1, 64, 64)
    data = ShardDataset(mni_set)
    assert data.manifest.attrs["mask_names"] == ["background", "gm", "wm"]
    masks = np.stack([data[i]["mask"].numpy() for i in range(len(data))])
    assert masks.shape == (len(data), 1, 64, 64)
    assert set(np.unique(masks).tolist()) == {0, 1, 2}
    # every kept slice holds at least min_foreground of tissue (before resizing: allow some slack)
    assert ((masks > 0).mean(axis=(1, 2, 3)) > 0.03).all()
    sources = data.read_column("source")
    assert all(
        s.startswith("mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz#slice") for s in sources
    )


def test_single_volume_is_split_by_contiguous_slabs(mni_set: Path) -> None:
    data = ShardDataset(mni_set)
    position = np.array([slice_index(s) for s in data.read_column("source")])
    split = data.read_column("split").astype(int)
    assert json.loads((mni_set / "splits.json").read_text())["policy"] == "slab"
    assert {0, 1, 2} <= set(split.tolist())  # train, val and test all present
    order = np.argsort(position)
    # along the slice axis the split changes only between slabs: each split is a few
    # contiguous blocks, never interleaved neighbours
    changes = int((np.diff(split[order]) != 0).sum())
    assert changes <= SLABS_PER_VOLUME - 1
    for s in (0, 1, 2):
        kept = np.sort(position[split == s])
        blocks = 1 + int((np.diff(kept) > 1).sum())
        assert blocks <= SLABS_PER_VOLUME and blocks < len(kept)
    # each row's group is its slab: contiguous, one split each (what folds keep whole)
    groups = data.read_column("group")
    assert len(set(groups)) == SLABS_PER_VOLUME
    for g in set(groups):
        assert g.startswith("mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz#slab")
        kept = np.sort(position[groups == g])
        assert len(set(split[groups == g].tolist())) == 1 and np.all(np.diff(kept) == 1)


def test_label_volume_equals_probability_maps(tissue_labels: Path) -> None:
    from_maps = read(T1, mask=[GM, WM], mask_names=NAMES, axis=1)
    from_labels = read(T1, mask=[tissue_labels], axis=1)
    assert len(from_maps) == len(from_labels) and 120 <= len(from_maps) <= 220
    for a, b in zip(from_maps, from_labels, strict=True):
        assert a.source == b.source and a.position == b.position
        np.testing.assert_array_equal(a.mask, b.mask)
        np.testing.assert_array_equal(a.image, b.image)
    info = NiftiAdapter(T1, options(mask=[tissue_labels])).info()
    assert info.mask_names == ["background", "class1", "class2"]  # found from the largest label
    assert info.label_kind == "none" and info.split_policy == "slab"


def test_label_outside_mask_names(tissue_labels: Path) -> None:
    with pytest.raises(DataError, match="labels 0..2, but there are 2 mask names"):
        read(T1, mask=[tissue_labels], mask_names=["background", "brain"])


def test_probability_maps_need_one_name_each() -> None:
    with pytest.raises(DataError, match="3 names but there are 2 probability maps|give 3 names"):
        NiftiAdapter(T1, options(mask=[GM, WM], mask_names=["background", "gm"])).info()


def test_mismatched_mask_shape_names_both_files(tmp_path: Path, tissue_labels: Path) -> None:
    img = nib.load(tissue_labels)
    cropped = tmp_path / "cropped.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[:, :-3], img.affine), cropped)
    with pytest.raises(DataError) as err:
        ingest(T1, tmp_path / "out", options(mask=[cropped]), progress=False)
    message = str(err.value)
    assert str(cropped) in message and str(T1) in message
    assert "(197, 230, 189)" in message and "(197, 233, 189)" in message
    assert not (tmp_path / "out").exists()


def test_mask_on_another_grid(tmp_path: Path, tissue_labels: Path) -> None:
    img = nib.load(tissue_labels)
    shifted = img.affine.copy()
    shifted[0, 3] += 5.0  # same shape, 5 mm elsewhere
    moved = tmp_path / "moved.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), shifted), moved)
    with pytest.raises(DataError, match="not on the same grid"):
        read(T1, mask=[moved])


def test_reorientation_makes_axis_mean_the_same(tmp_path: Path) -> None:
    """A volume stored left-right and anterior-posterior flipped (LPS) slices like the RAS one."""
    img = nib.load(T1)
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[0, 3], flip[1, 3] = img.shape[0] - 1, img.shape[1] - 1  # voxel i -> n-1-i
    data = np.asarray(img.dataobj)[::-1, ::-1, :]
    lps = tmp_path / "lps.nii.gz"
    nib.save(nib.Nifti1Image(np.ascontiguousarray(data), img.affine @ flip), lps)
    assert nib.aff2axcodes(nib.load(lps).affine) == ("L", "P", "S")
    a = read(T1, axis=2)
    b = read(lps, axis=2)
    assert len(a) == len(b)
    for x, y in zip(a[::20], b[::20], strict=True):
        np.testing.assert_array_equal(x.image, y.image)


def test_slices_are_displayed_anterior_and_superior_up(tmp_path: Path) -> None:
    """A bright block at the anterior-superior-right corner of a RAS volume."""
    vol = np.zeros((20, 30, 40), np.float32)
    vol[2:8, :, :] = 10.0  # a slab of tissue so every slice has foreground
    vol[15:19, 24:29, 33:39] = 100.0  # right, anterior, superior
    path = tmp_path / "marker.nii.gz"
    nib.save(nib.Nifti1Image(vol, np.eye(4)), path)
    for axis, shape in ((0, (40, 30)), (1, (40, 20)), (2, (30, 20))):
        records = read(path, axis=axis, min_foreground=0.0)
        marked = [r for r in records if r.image.max() == 100.0]
        assert marked and marked[0].image.shape == shape
        rows, cols = np.nonzero(marked[0].image == 100.0)
        assert rows.max() < shape[0] / 2  # anterior (axial) / superior (others) is up
        # axial and coronal: the patient's right on the image right (neurological convention);
        # sagittal: anterior on the right
        assert cols.min() > shape[1] / 2


def test_without_masks_foreground_is_tissue() -> None:
    records = read(T1, axis=2)
    assert 100 <= len(records) <= 200
    assert all(r.mask is None for r in records)
    assert len(read(T1, axis=2, min_foreground=0.0)) == 189  # everything when asked for


def test_decathlon_layout_pairs_images_and_labels(tmp_path: Path, tissue_labels: Path) -> None:
    t1 = np.asarray(nib.load(T1).dataobj)[::3, ::3, ::3]
    lab = np.asarray(nib.load(tissue_labels).dataobj)[::3, ::3, ::3]
    affine = nib.load(T1).affine @ np.diag([3.0, 3.0, 3.0, 1.0])
    src = tmp_path / "Task99_Brain"
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (src / sub).mkdir(parents=True)
    for i in range(3):
        name = f"brain_{i:03d}.nii.gz"
        nib.save(nib.Nifti1Image(np.roll(t1, i, axis=2), affine), src / "imagesTr" / name)
        nib.save(nib.Nifti1Image(np.roll(lab, i, axis=2), affine), src / "labelsTr" / name)
    nib.save(nib.Nifti1Image(t1, affine), src / "imagesTs" / "brain_100.nii.gz")  # unlabelled
    labels = {"0": "background", "1": "grey matter", "2": "white matter"}
    (src / "dataset.json").write_text(json.dumps({"labels": labels}))
    assert resolve_adapter(src, "auto") is NiftiAdapter
    adapter = NiftiAdapter(src, options())
    info = adapter.info()
    assert info.mask_names == ["background", "grey matter", "white matter"]
    assert info.split_policy == "group"  # three volumes: split by volume
    out = tmp_path / "out"
    manifest = ingest(src, out, options(image_size=32), progress=False)
    verify_shard_set(out)
    data = ShardDataset(out)
    groups = data.read_column("group")
    assert set(groups) == {f"brain_{i:03d}.nii.gz" for i in range(3)}
    split = data.read_column("split")
    for g in set(groups):
        assert len({int(s) for s, gg in zip(split, groups, strict=True) if gg == g}) == 1
    assert manifest.count == len(data) > 30
    (src / "labelsTr" / "brain_002.nii.gz").unlink()
    with pytest.raises(DataError, match="brain_002.nii.gz has no label volume"):
        NiftiAdapter(src, options())


def test_folder_of_volumes_and_mask_rules(tmp_path: Path) -> None:
    t1 = np.asarray(nib.load(T1).dataobj)[::4, ::4, ::4]
    for name in ("a.nii.gz", "sub/b.nii", "c.nii.gz"):
        (tmp_path / "src" / name).parent.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(t1, np.eye(4)), tmp_path / "src" / name)
    adapter = NiftiAdapter(tmp_path / "src", options())
    assert [v.name for v in adapter.volumes] == ["a.nii.gz", "c.nii.gz", "sub/b.nii"]
    assert adapter.info().split_policy == "group" and adapter.info().mask_names == []
    with pytest.raises(DataError, match="masks for one volume, but .* holds 3 volumes"):
        NiftiAdapter(tmp_path / "src", options(mask=[GM]))
    # a folder with one volume and its masks (which are not volumes themselves)
    one = tmp_path / "one"
    one.mkdir()
    (one / "t1.nii.gz").symlink_to(T1)
    (one / "gm.nii.gz").symlink_to(GM)
    (one / "wm.nii.gz").symlink_to(WM)
    adapter = NiftiAdapter(one, options(mask=[one / "gm.nii.gz", one / "wm.nii.gz"]))
    assert [v.name for v in adapter.volumes] == ["t1.nii.gz"]
    assert adapter.info().mask_names == ["background", "class1", "class2"]


def test_4d_volume_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "fmri.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8, 3), np.float32), np.eye(4)), path)
    with pytest.raises(DataError) as err:
        read(path)
    assert str(path) in str(err.value) and "4D" in str(err.value) and "slicer" in err.value.fix
    assert "--nifti-volume" in err.value.fix
    single = tmp_path / "single.nii.gz"  # a trailing dimension of 1 is just a 3D volume
    nib.save(nib.Nifti1Image(np.ones((8, 8, 8, 1), np.float32), np.eye(4)), single)
    assert len(read(single, min_foreground=0.0)) == 8


def test_nifti_volume_slices_one_modality_of_a_4d_file(tmp_path: Path) -> None:
    """MSD Task05 prostate stores T2 and ADC in one 4D file: --nifti-volume picks one."""
    path = tmp_path / "prostate.nii.gz"
    data = np.stack([np.full((8, 8, 8), v, np.float32) for v in (1.0, 2.0, 3.0)], axis=-1)
    data[..., 1][2:6, 2:6, :] = 9.0  # only volume 1 has structure
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    one = read(path, nifti_volume=1, min_foreground=0.0, clip_percentiles=(0.0, 100.0))
    assert len(one) == 8
    assert len(np.unique(one[0].image)) == 2  # volume 1's square, not a constant volume
    flat = read(path, nifti_volume=0, min_foreground=0.0, clip_percentiles=(0.0, 100.0))
    assert all(len(np.unique(r.image)) == 1 for r in flat)
    with pytest.raises(DataError) as err:
        read(path, nifti_volume=3)
    assert str(path) in str(err.value) and "3 volumes" in str(err.value)
    assert "--nifti-volume 0 to 2" in err.value.fix


def test_truncated_and_not_nifti(tmp_path: Path) -> None:
    data = T1.read_bytes()
    half = tmp_path / "half.nii.gz"
    half.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError) as err:
        ingest(half, tmp_path / "out", options(), progress=False)
    assert str(half) in str(err.value) and "replace" in (err.value.fix or "")
    assert not (tmp_path / "out").exists()
    bad = tmp_path / "notes.nii.gz"
    bad.write_bytes(gzip.compress(b"not a nifti header"))
    with pytest.raises(DataError, match="notes.nii.gz is not a readable NIfTI"):
        read(bad)
    png = tmp_path / "x.png"
    png.touch()
    with pytest.raises(DataError, match="is not a .nii or .nii.gz file"):
        NiftiAdapter(png, options())


def test_sniff(tmp_path: Path) -> None:
    assert NiftiAdapter.sniff(T1) and resolve_adapter(T1, "auto") is NiftiAdapter
    assert not NiftiAdapter.sniff(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.png").write_bytes(b"")
    assert not NiftiAdapter.sniff(tmp_path)


def test_cli_ingests_and_verifies_the_demo(tmp_path: Path) -> None:
    synmed = Path(sys.executable).with_name("synmed")
    cmd = [str(synmed)] if synmed.exists() else [sys.executable, "-m", "suite"]
    out = tmp_path / "mni"
    run = subprocess.run(
        [*cmd, "data", "ingest", "demo:mni152", "--out", str(out), "--image-size", "64", "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "masks       background, gm, wm" in run.stdout
    run = subprocess.run(
        [*cmd, "data", "verify", str(out)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"ok {out}")


def test_plane_labels_slice_every_axis_and_every_split_holds_every_plane(tmp_path: Path) -> None:
    out = tmp_path / "planes"
    opts = options(mask=[GM, WM], mask_names=NAMES, image_size=32, plane_labels=True)
    manifest = ingest(T1, out, opts, progress=False)
    assert manifest.class_names == ["sagittal", "coronal", "axial"]
    axial = read(T1, mask=[GM, WM], mask_names=NAMES, axis=2)
    all_planes = read(T1, mask=[GM, WM], mask_names=NAMES, plane_labels=True)
    assert sum(r.label == 2 for r in all_planes) == len(axial)  # axis 2 is the axial plane
    assert {r.group for r in all_planes} == {f"{all_planes[0].group.split('#')[0]}#{p}"
                                             for p in ("sagittal", "coronal", "axial")}  # fmt: skip
    for split in ("train", "val", "test"):
        data = ShardDataset(out, split=split)
        assert set(data.labels.tolist()) == {0, 1, 2}, split
        assert data.has_masks


def test_every_slice_dropped_names_the_threshold_and_the_largest_fraction(
    tmp_path: Path,
) -> None:
    image = np.random.default_rng(0).normal(100, 10, (16, 16, 8)).astype(np.float32)
    lesion = np.zeros((16, 16, 8), np.uint8)
    lesion[4:6, 4:7, 3] = 1  # 6 of 256 voxels: a slice fraction of 0.0234 under the 0.05 default
    lesion[5, 5, 4] = 1
    affine = np.eye(4)
    nib.save(nib.Nifti1Image(image, affine), tmp_path / "ct.nii.gz")
    nib.save(nib.Nifti1Image(lesion, affine), tmp_path / "lesion.nii.gz")
    opts = {"mask": [tmp_path / "lesion.nii.gz"], "mask_names": ["background", "lesion"]}
    out = tmp_path / "out"
    with pytest.raises(DataError) as err:
        ingest(tmp_path / "ct.nii.gz", out, options(**opts), progress=False)
    assert "all 8 slices were dropped by --min-foreground 0.05" in err.value.what
    assert "largest foreground fraction of any slice is 0.02344" in err.value.what
    assert "no images found" not in err.value.what
    assert "--min-foreground 0 " in (err.value.fix or "") and "at most 0.0234" in err.value.fix
    assert not out.exists() and not list(tmp_path.glob(".out.staging-*"))
    # the fix works: the suggested value keeps the fullest slice, 0 keeps them all
    assert ingest(tmp_path / "ct.nii.gz", out, options(**opts, min_foreground=0.0234),
                  progress=False).count == 1  # fmt: skip
    assert ingest(tmp_path / "ct.nii.gz", out, options(**opts, min_foreground=0), overwrite=True,
                  progress=False).count == 8  # fmt: skip


def test_ct_floor_and_positive_slices_by_mask_pixels(tmp_path: Path) -> None:
    """A synthetic CT: air at -1000 HU around tissue at 40 HU; a label volume whose axial
    slices hold 0, 5, 30 and 60 foreground pixels."""
    ct = np.full((16, 16, 4), -1000.0, np.float32)
    ct[4:12, 4:12] = 40.0
    ct[6:8, 6:8] = 300.0
    labels = np.zeros(ct.shape, np.uint8)
    for z, n in enumerate((0, 5, 30, 60)):
        labels.reshape(-1, 4)[:n, z] = 1
    nib.save(nib.Nifti1Image(ct, np.eye(4)), tmp_path / "ct.nii.gz")
    nib.save(nib.Nifti1Image(labels, np.eye(4)), tmp_path / "seg.nii.gz")
    common = dict(mask=[tmp_path / "seg.nii.gz"], min_foreground=0.0, clip_percentiles=(0, 100))
    ingest(tmp_path / "ct.nii.gz", tmp_path / "raw", options(**common), progress=False)
    ingest(
        tmp_path / "ct.nii.gz", tmp_path / "floor",
        options(**common, hu_floor=-256, min_mask_pixels=21), progress=False,
    )  # fmt: skip
    raw, floored = ShardDataset(tmp_path / "raw"), ShardDataset(tmp_path / "floor")
    assert len(raw) == 4
    assert sorted(slice_index(s) for s in floored.read_column("source")) == [2, 3]
    assert all(int(floored[i]["mask"].sum()) >= 21 for i in range(len(floored)))
    # 40 HU on [-256, 300] and on [-1000, 300]: the floor gives soft tissue the grey range back
    assert set(np.unique(floored[0]["image"])) == {0, round(296 * 255 / 556), 255}
    assert set(np.unique(raw[0]["image"])) == {0, round(1040 * 255 / 1300), 255}
    attrs = floored.manifest.attrs["ingest_options"]
    assert attrs["hu_floor"] == -256 and attrs["min_mask_pixels"] == 21
