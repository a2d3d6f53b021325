"""NIfTI-1/2 volumes (.nii, .nii.gz), sliced into 2D images with optional segmentation masks.

SOURCE is one volume, a folder of volumes (searched recursively), or a Medical Segmentation
Decathlon folder (``imagesTr/X.nii.gz`` + ``labelsTr/X.nii.gz``, paired by file name). Every volume
is reoriented to the closest canonical RAS orientation first, so ``axis`` means the same for every
file (0 sagittal, 1 coronal, 2 axial), and each slice is rotated so anterior (axial) or superior
(sagittal, coronal) is up, with the patient's left on the image left (neurological convention).

Masks (``options.mask``) are either one integer label volume (values are class ids) or several
probability maps, one per foreground class: label = 1 + argmax over the maps where the largest is
at least ``mask_threshold``, else 0 (background). Maps stored as integers 0..N (8-bit templates keep
p * 255) are divided by their maximum first, as nilearn does for the MNI152 tissue maps.

A slice is kept when its foreground fraction is at least ``min_foreground``. Foreground is mask > 0
when there are masks; without masks it is the voxels above 10% of the volume's clipped intensity
range (``clip_percentiles``), which separates air and scanner background from tissue in MR and CT
(air at -1000 HU lies far below 10% of a -1000..2000 HU range).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from suite.data.ingest.base import Record, SourceAdapter, SourceInfo
from suite.data.ingest.options import IngestOptions
from suite.errors import DataError

NIFTI_SUFFIXES = (".nii", ".nii.gz")
SNIFF_FILES = 256  # entries looked at before a folder is declared not-NIfTI
BACKGROUND_LEVEL = 0.10  # foreground without masks: above this fraction of the clipped range
AFFINE_TOLERANCE = 1e-2  # mm: image and mask grids must agree this well
REPLACE = (
    "the file is corrupt or truncated: replace it with a good copy or remove it from the source"
)
EXTRACT_3D = (
    "pass --nifti-volume N (ingest.nifti_volume: the volume of the last axis to slice), or "
    'extract one 3D volume first, e.g. python -c "import nibabel as nib; '
    "nib.save(nib.load('IN.nii.gz').slicer[..., 0], 'OUT.nii.gz')\" (or FSL: fslroi IN OUT 0 1)"
)


def is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES) and not path.name.startswith(".")


def list_nifti(folder: Path) -> list[Path]:
    """NIfTI files below ``folder``, recursively, sorted; hidden files and folders skipped."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(Path(root) / name for name in files if is_nifti(Path(root) / name))
    return sorted(found)


def _stem(path: Path) -> str:
    name = path.name
    return name[: -len(".nii.gz")] if name.lower().endswith(".nii.gz") else path.stem


@dataclass(slots=True)
class _Volume:
    image: Path
    masks: list[Path] = field(default_factory=list)  # none, one label volume, or probability maps
    name: str = ""


def load_volume(
    path: Path, what: str = "volume", volume: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A 3D NIfTI volume in closest-canonical (RAS) orientation: (float32 data, affine).
    ``volume`` picks one 3D volume of a 4D file (MSD Task05 prostate: 0 is T2, 1 is ADC).

    Raises:
        DataError: naming the file when it is missing, not NIfTI, truncated, not 3D, or has no
        volume ``volume``.
    """
    if not path.is_file():
        raise DataError(f"NIfTI {what} {path} does not exist", "fix the path")
    try:
        img = nib.load(path)
        shape = img.shape
        if volume is not None and len(shape) == 4:
            if volume >= shape[3]:
                raise DataError(
                    f"{path} holds {shape[3]} volumes (shape {shape}), so --nifti-volume "
                    f"{volume} is out of range",
                    f"pass --nifti-volume 0 to {shape[3] - 1}",
                )
            img = img.slicer[..., volume]
            shape = img.shape
        if len(shape) > 3 and all(n == 1 for n in shape[3:]):
            img = img.slicer[(slice(None),) * 3 + (0,) * (len(shape) - 3)]
        elif len(shape) != 3:
            raise DataError(
                f"{path} is a {len(shape)}D NIfTI of shape {shape}: ingest slices 3D volumes",
                EXTRACT_3D if len(shape) > 3 else "pass a 3D volume",
            )
        img = nib.as_closest_canonical(img)
        data = img.get_fdata(dtype=np.float32)  # applies scl_slope / scl_inter
    except DataError:
        raise
    except Exception as err:  # nibabel, gzip and zlib raise many types on a bad file
        raise DataError(
            f"{path} is not a readable NIfTI {what} ({type(err).__name__}: {err})", REPLACE
        ) from None
    return data, img.affine


class NiftiAdapter(SourceAdapter):
    name = "nifti"

    def __init__(self, source: Path, options: IngestOptions) -> None:
        super().__init__(source, options)
        if options.axis not in (0, 1, 2):
            raise DataError(f"axis {options.axis} is not 0, 1 or 2", "pass --axis 0, 1 or 2")
        if not 0.0 < options.mask_threshold <= 1.0:
            raise DataError(
                f"mask_threshold {options.mask_threshold} is outside (0, 1]",
                "pass a probability, e.g. --mask-threshold 0.5",
            )
        masks = [Path(m) for m in options.mask]
        for m in masks:
            if not m.is_file():
                raise DataError(f"mask {m} does not exist", "fix the --mask path")
        self.dataset_json: dict | None = None
        if source.is_file():
            if not is_nifti(source):
                raise DataError(f"{source} is not a .nii or .nii.gz file", "pass a NIfTI volume")
            self.volumes = [_Volume(source, masks, source.name)]
        elif (source / "imagesTr").is_dir() and (source / "labelsTr").is_dir():
            if masks:
                raise DataError(
                    f"{source} has imagesTr/ and labelsTr/: its masks come from labelsTr/",
                    "drop --mask (it applies to a single volume)",
                )
            self.volumes = self._pair_decathlon(source)
        elif source.is_dir():
            skip = {m.resolve() for m in masks}
            files = [p for p in list_nifti(source) if p.resolve() not in skip]
            if masks and len(files) > 1:
                raise DataError(
                    f"--mask gives masks for one volume, but {source} holds {len(files)} volumes",
                    "pass a single volume as SOURCE, or lay the folder out as imagesTr/X.nii.gz + "
                    "labelsTr/X.nii.gz (Decathlon) for per-volume masks",
                )
            self.volumes = [_Volume(p, masks, p.relative_to(source).as_posix()) for p in files]
        else:
            raise DataError(
                f"NIfTI source {source} does not exist", "pass a .nii(.gz) file or folder"
            )
        if not self.volumes:
            raise DataError(f"{source} holds no .nii or .nii.gz files", "put NIfTI volumes in it")
        self.has_masks = bool(self.volumes[0].masks)
        self._mask_names: list[str] | None = None

    def _pair_decathlon(self, source: Path) -> list[_Volume]:
        labels = {p.name: p for p in list_nifti(source / "labelsTr")}
        volumes = []
        for image in list_nifti(source / "imagesTr"):
            label = labels.get(image.name)
            if label is None:
                raise DataError(
                    f"{image} has no label volume labelsTr/{image.name}",
                    "add the label volume or move the image out of imagesTr/",
                )
            volumes.append(_Volume(image, [label], image.name))
        meta = source / "dataset.json"
        if meta.is_file():
            try:
                self.dataset_json = json.loads(meta.read_text())
            except (OSError, ValueError) as err:
                raise DataError(f"{meta} is not valid JSON ({err})", "fix or remove it") from None
        return volumes

    @classmethod
    def sniff(cls, source: Path) -> bool:
        if source.is_file():
            return is_nifti(source)
        if not source.is_dir():
            return False
        seen = 0
        for root, dirs, files in os.walk(source):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in files:
                if is_nifti(Path(root) / name):
                    return True
                seen += 1
                if seen >= SNIFF_FILES:
                    return False
        return False

    # -- mask names -----------------------------------------------------------------------------

    @property
    def mask_names(self) -> list[str]:
        if self._mask_names is None:
            self._mask_names = self._find_mask_names() if self.has_masks else []
        return self._mask_names

    def _find_mask_names(self) -> list[str]:
        given = self.options.mask_names
        maps = len(self.volumes[0].masks) if len(self.volumes[0].masks) > 1 else 0
        if maps:
            if given is not None and len(given) != maps + 1:
                raise DataError(
                    f"--mask-names has {len(given)} names but there are {maps} probability maps",
                    f"give {maps + 1} names: background first, then one per map in --mask order",
                )
            return list(given) if given is not None else _default_names(maps)
        if given is not None:
            return list(given)
        from_json = _decathlon_names(self.dataset_json)
        if from_json:
            return from_json
        # one label volume per image: the largest label sets the class count
        top = 0
        for volume in self.volumes:
            data, _ = load_volume(volume.masks[0], "label volume")
            top = max(top, int(np.nanmax(data)) if data.size else 0)
        return _default_names(top)

    def info(self) -> SourceInfo:
        kind = ""
        if self.has_masks:
            kind = " + probability maps" if len(self.volumes[0].masks) > 1 else " + label volumes"
        return SourceInfo(
            class_names=list(PLANES) if self.options.plane_labels else [],
            label_kind="multiclass" if self.options.plane_labels else "none",
            mask_names=self.mask_names,
            expected_count=None,  # slices kept depend on min_foreground
            split_policy="group" if len(self.volumes) >= 3 else "slab",
            description=f"NIfTI {self.source.name}{kind}",
        )

    # -- records --------------------------------------------------------------------------------

    def records(self) -> Iterator[Record]:
        kept, dropped, largest = 0, 0, 0.0
        names = self.mask_names
        for volume in self.volumes:
            data, affine = load_volume(volume.image, volume=self.options.nifti_volume)
            mask = self._mask_volume(volume, data.shape, affine, names) if volume.masks else None
            if mask is not None:
                foreground = mask > 0
            else:
                finite = data[np.isfinite(data)]
                lo, hi = (
                    np.percentile(finite, self.options.clip_percentiles) if finite.size else (0, 0)
                )
                foreground = data > lo + BACKGROUND_LEVEL * (hi - lo)
            planes = (0, 1, 2) if self.options.plane_labels else (self.options.axis,)
            for axis in planes:
                fractions = foreground.mean(axis=tuple(a for a in range(3) if a != axis))
                for index, fraction in enumerate(fractions.tolist()):
                    if fraction < self.options.min_foreground:
                        dropped += 1
                        largest = max(largest, fraction)
                        continue
                    kept += 1
                    plane = PLANES[axis]
                    yield Record(
                        image=_slice(data, axis, index),
                        source=f"{volume.image}#{plane}{index}"
                        if self.options.plane_labels
                        else f"{volume.image}#slice{index}",
                        label=axis if self.options.plane_labels else None,
                        mask=_slice(mask, axis, index) if mask is not None else None,
                        # per plane, so slab splits give every split slices of every plane
                        group=f"{volume.name}#{plane}"
                        if self.options.plane_labels
                        else volume.name,
                        position=float(index),
                    )
        if not kept and dropped:
            raise self._all_dropped(dropped, largest)

    def _all_dropped(self, dropped: int, largest: float) -> DataError:
        threshold = self.options.min_foreground
        # rounded down, so that the suggested value keeps at least the fullest slice
        below = math.floor(largest * 1e4) / 1e4
        what = "mask > 0" if self.has_masks else "voxels above 10% of the clipped intensity range"
        return DataError(
            f"{self.source}: all {dropped} slices were dropped by --min-foreground {threshold} "
            f"(foreground: {what}); the largest foreground fraction of any slice is {largest:.4g}",
            "pass --min-foreground 0 to keep every slice"
            + (f", or a value at most {below:g} to keep the fullest ones" if below > 0 else ""),
        )

    def _mask_volume(
        self, volume: _Volume, shape: tuple[int, ...], affine: np.ndarray, names: list[str]
    ) -> np.ndarray:
        """The (X, Y, Z) uint8 class-id volume of one image."""
        loaded = []
        for path in volume.masks:
            data, mask_affine = load_volume(path, "mask")
            if data.shape != shape:
                raise DataError(
                    f"mask {path} has shape {data.shape} but image {volume.image} has shape "
                    f"{shape} (both reoriented to RAS)",
                    "give masks the voxel grid of their image (resample with nearest neighbour)",
                )
            if not np.allclose(mask_affine, affine, atol=AFFINE_TOLERANCE):
                raise DataError(
                    f"mask {path} and image {volume.image} have the same shape but different "
                    "voxel-to-world affines: they are not on the same grid",
                    "resample the mask onto the image, e.g. nilearn.image.resample_to_img(mask, "
                    "image, interpolation='nearest'), or fix the header that is wrong",
                )
            loaded.append(data)
        if len(loaded) == 1:
            return _label_volume(volume.masks[0], loaded[0], names)
        maps = np.stack([m / m.max() if m.max() > 1 else m for m in loaded])
        best = maps.argmax(axis=0)
        peak = np.take_along_axis(maps, best[None], axis=0)[0]
        return np.where(peak >= self.options.mask_threshold, best + 1, 0).astype(np.uint8)


def _label_volume(path: Path, data: np.ndarray, names: list[str]) -> np.ndarray:
    """An integer label volume checked against the mask names."""
    if not np.all(np.isfinite(data)) or not np.array_equal(data, np.round(data)):
        raise DataError(
            f"label volume {path} holds non-integer values",
            "pass an integer label volume, or several probability maps (one --mask per class)",
        )
    low, high = int(data.min()), int(data.max())
    if low < 0 or high >= len(names):
        raise DataError(
            f"label volume {path} holds labels {low}..{high}, but there are {len(names)} mask "
            f"names ({', '.join(names)})",
            f"pass --mask-names with {high + 1} names (background first)",
        )
    return data.astype(np.uint8)


# Volumes are in closest-canonical RAS orientation: axis 0 runs left-right, 1 back-front, 2 up-down.
PLANES = ("sagittal", "coronal", "axial")


def _slice(volume: np.ndarray, axis: int, index: int) -> np.ndarray:
    # RAS voxel axes: the slice's first axis runs left->right, its second posterior->anterior (or
    # inferior->superior); rot90 puts that second axis upward, the first left to right
    plane = volume[(slice(None),) * axis + (index,)]  # a view: np.take would copy the volume axis
    return np.ascontiguousarray(np.rot90(plane))


def _default_names(classes: int) -> list[str]:
    return ["background"] + [f"class{i}" for i in range(1, classes + 1)]


def _decathlon_names(meta: dict | None) -> list[str]:
    """Class names from MSD ``{"0": "background", ...}`` or nnU-Net v2 ``{"background": 0}``."""
    labels = (meta or {}).get("labels")
    if not isinstance(labels, dict) or not labels:
        return []
    try:
        if all(str(k).isdigit() for k in labels):
            by_id = {int(k): str(v) for k, v in labels.items()}
        else:
            by_id = {int(v): str(k) for k, v in labels.items()}
    except (TypeError, ValueError):
        return []  # region-based nnU-Net labels (lists): fall back to class ids
    if sorted(by_id) != list(range(len(by_id))):
        return []
    return [by_id[i] for i in range(len(by_id))]
