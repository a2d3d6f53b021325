"""MedMNIST v2 / MedMNIST+ ``.npz`` files (Yang et al., Scientific Data 2023; https://medmnist.com).

Each file holds ``{train,val,test}_images`` (N, H, W) or (N, H, W, 3) uint8 at 28, 64, 128 or 224
pixels, and ``{train,val,test}_labels`` (N, 1) class ids or (N, K) multi-hot rows (ChestMNIST,
K = 14). The official splits are kept. Copies without val are accepted (val is then carved from
train by the pipeline), but a split's images need its labels.

Only labels are loaded whole. Images are streamed row by row out of the zip member, so a 224 px
file (PathMNIST: 13 GB decoded) never sits in memory. Nothing in the file runs as code: labels are
read with ``allow_pickle=False`` and object arrays are refused.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from suite.data.ingest.base import LabelKind, Record, SourceAdapter, SourceInfo
from suite.data.ingest.nih import NIH_FINDINGS
from suite.data.ingest.options import IngestOptions
from suite.data.ingest.splits import split_quotas
from suite.errors import DataError

SPLIT_NAMES = ("train", "val", "test")
BLOCK = 256  # images inflated per read
_READ_ERRORS = (OSError, EOFError, ValueError, zlib.error, zipfile.BadZipFile)

_ORGANS = [
    "bladder",
    "femur-left",
    "femur-right",
    "heart",
    "kidney-left",
    "kidney-right",
    "liver",
    "lung-left",
    "lung-right",
    "pancreas",
    "spleen",
]

# The "label" texts of medmnist.INFO (MedMNIST/MedMNIST, medmnist/info.py), 2D datasets, keyed by
# the file name's flag. ChestMNIST uses the NIH ChestX-ray14 spelling instead of MedMNIST's
# lower-case texts ("pleural" for Pleural_Thickening), so ChestMNIST and NIH sets share class names.
CLASS_NAMES: dict[str, list[str]] = {
    "pathmnist": [
        "adipose",
        "background",
        "debris",
        "lymphocytes",
        "mucus",
        "smooth muscle",
        "normal colon mucosa",
        "cancer-associated stroma",
        "colorectal adenocarcinoma epithelium",
    ],
    "chestmnist": NIH_FINDINGS,
    "dermamnist": [
        "actinic keratoses and intraepithelial carcinoma",
        "basal cell carcinoma",
        "benign keratosis-like lesions",
        "dermatofibroma",
        "melanoma",
        "melanocytic nevi",
        "vascular lesions",
    ],
    "octmnist": ["choroidal neovascularization", "diabetic macular edema", "drusen", "normal"],
    "pneumoniamnist": ["normal", "pneumonia"],
    "retinamnist": ["0", "1", "2", "3", "4"],  # ordinal DR grades
    "breastmnist": ["malignant", "normal, benign"],
    "bloodmnist": [
        "basophil",
        "eosinophil",
        "erythroblast",
        "immature granulocytes(myelocytes, metamyelocytes and promyelocytes)",
        "lymphocyte",
        "monocyte",
        "neutrophil",
        "platelet",
    ],
    "tissuemnist": [
        "Collecting Duct, Connecting Tubule",
        "Distal Convoluted Tubule",
        "Glomerular endothelial cells",
        "Interstitial endothelial cells",
        "Leukocytes",
        "Podocytes",
        "Proximal Tubule Segments",
        "Thick Ascending Limb",
    ],
    "organamnist": _ORGANS,
    "organcmnist": _ORGANS,
    "organsmnist": _ORGANS,
}


def known_flag(path: Path) -> str | None:
    """The MedMNIST flag a file name starts with (``pathmnist_64.npz`` -> ``pathmnist``)."""
    stem = path.stem.lower()
    matches = [flag for flag in CLASS_NAMES if stem.startswith(flag)]
    return max(matches, key=len) if matches else None


@dataclass(frozen=True, slots=True)
class _NpyHeader:
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool


def _read_npy_header(fp: IO[bytes]) -> _NpyHeader:
    version = np.lib.format.read_magic(fp)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
    return _NpyHeader(tuple(shape), dtype, fortran)


@dataclass(frozen=True, slots=True)
class _Split:
    name: str
    images: _NpyHeader
    labels: np.ndarray  # (N, 1) or (N, K)


class MedMNISTAdapter(SourceAdapter):
    name = "medmnist"

    def __init__(self, source: Path, options: IngestOptions) -> None:
        super().__init__(source, options)
        fix = "re-download the .npz (MedMNIST files are zip archives of .npy arrays)"
        if not source.is_file():
            raise DataError(f"{source} is not a file", "pass a MedMNIST .npz file")
        try:
            loaded = np.load(source, allow_pickle=False)
            if not isinstance(loaded, np.lib.npyio.NpzFile):
                raise DataError(f"{source} holds one array, not a MedMNIST archive", fix)
            with loaded as npz:
                self.splits = self._read_splits(npz, sorted(npz.files))
        except _READ_ERRORS as err:
            raise DataError(
                f"{source} is not a readable .npz ({type(err).__name__}: {err})", fix
            ) from None
        self.multilabel = any(s.labels.shape[1] > 1 for s in self.splits)
        widths = {s.labels.shape[1] for s in self.splits}
        if len(widths) > 1:
            raise DataError(
                f"{source}: the label arrays have different widths {sorted(widths)}",
                "every split needs labels of the same form: (N, 1) ids or (N, K) multi-hot rows",
            )
        self.flag = known_flag(source)
        self.class_names, self.names_from = self._class_names(options)
        k = len(self.class_names)
        if self.multilabel and k != self.splits[0].labels.shape[1]:
            raise DataError(
                f"{source}: labels have {self.splits[0].labels.shape[1]} columns but there are "
                f"{k} class names",
                "pass one name per label column in --class-names",
            )
        if not self.multilabel:
            for s in self.splits:
                bad = np.flatnonzero((s.labels[:, 0] < 0) | (s.labels[:, 0] >= k))
                if len(bad):
                    raise DataError(
                        f"{source}: {s.name}_labels row {int(bad[0])} is "
                        f"{int(s.labels[bad[0], 0])}, outside the {k} classes",
                        f"classes: {', '.join(self.class_names)}; fix --class-names",
                    )
        self.quotas = split_quotas([s.images.shape[0] for s in self.splits], options.limit)

    def _read_splits(self, npz: np.lib.npyio.NpzFile, keys: list[str]) -> list[_Split]:
        have = ", ".join(keys) or "none"
        present = [s for s in SPLIT_NAMES if f"{s}_images" in keys or f"{s}_labels" in keys]
        missing = [
            f"{s}_{kind}"
            for s in present
            for kind in ("images", "labels")
            if f"{s}_{kind}" not in keys
        ]
        if not present or missing:
            raise DataError(
                f"{self.source}: missing key(s) {', '.join(missing) or 'train_images, train_labels'}"
                f" (the file has: {have})",
                "a MedMNIST .npz has train_images, train_labels, val_images, val_labels, "
                "test_images, test_labels",
            )
        splits = []
        with zipfile.ZipFile(self.source) as zf:
            for name in present:
                with zf.open(f"{name}_images.npy") as fp:
                    images = _read_npy_header(fp)
                labels = np.asarray(npz[f"{name}_labels"])
                splits.append(self._check_split(name, images, labels))
        return splits

    def _check_split(self, name: str, images: _NpyHeader, labels: np.ndarray) -> _Split:
        shape = images.shape
        if images.dtype != np.uint8 or not (
            len(shape) == 3 or (len(shape) == 4 and shape[3] in (1, 3))
        ):
            raise DataError(
                f"{self.source}: {name}_images is {images.dtype} {shape}",
                "MedMNIST images are uint8 (N, H, W) or (N, H, W, 3)",
            )
        if labels.ndim == 1:
            labels = labels[:, None]
        if labels.ndim != 2 or labels.dtype.kind not in "iub" or labels.shape[0] != shape[0]:
            raise DataError(
                f"{self.source}: {name}_labels is {labels.dtype} {labels.shape} for "
                f"{shape[0]} images",
                "labels are integer (N, 1) class ids or (N, K) multi-hot rows, one per image",
            )
        return _Split(name, images, labels.astype(np.int64))

    def _class_names(self, options: IngestOptions) -> tuple[list[str], str]:
        if options.class_names:
            return list(options.class_names), "--class-names"
        if self.multilabel:
            k = self.splits[0].labels.shape[1]
        else:
            k = 1 + max(int(s.labels.max(initial=0)) for s in self.splits)
        table = CLASS_NAMES.get(self.flag or "")
        # a table that does not fit the labels means the file is not what its name says
        if table is not None and (len(table) == k if self.multilabel else len(table) >= k):
            return list(table), f"MedMNIST {self.flag}"
        return [str(i) for i in range(k)], "class ids"

    @classmethod
    def sniff(cls, source: Path) -> bool:
        if not (source.is_file() and source.suffix.lower() == ".npz"):
            return False
        try:
            with zipfile.ZipFile(source) as zf:
                return any(n.endswith("_images.npy") for n in zf.namelist())
        except (OSError, zipfile.BadZipFile):
            return False

    def info(self) -> SourceInfo:
        kind: LabelKind = "multilabel" if self.multilabel else "multiclass"
        parts = ", ".join(f"{s.name} {s.images.shape[0]}" for s in self.splits)
        size = "x".join(map(str, self.splits[0].images.shape[1:3]))
        return SourceInfo(
            class_names=self.class_names,
            label_kind=kind,
            expected_count=sum(self.quotas),
            split_policy="given",
            description=f"MedMNIST {self.source.name} {size} ({parts}; names: {self.names_from})",
        )

    def records(self) -> Iterator[Record]:
        with zipfile.ZipFile(self.source) as zf:
            for split, quota in zip(self.splits, self.quotas, strict=True):
                member = f"{split.name}_images.npy"
                for i, image in enumerate(self._images(zf, member, split.images, quota)):
                    row = split.labels[i]
                    label = row.astype(np.uint8) if self.multilabel else int(row[0])
                    yield Record(
                        image=image,
                        source=f"{self.source}#{split.name}/{i}",
                        label=label,
                        split=split.name,
                    )

    def _images(
        self, zf: zipfile.ZipFile, member: str, header: _NpyHeader, count: int
    ) -> Iterator[np.ndarray]:
        """The first ``count`` images of a member, read row by row from the (deflated) stream."""
        row_shape = header.shape[1:]
        row_bytes = int(np.prod(row_shape, dtype=np.int64))  # uint8
        try:
            with zf.open(member) as fp:
                _read_npy_header(fp)
                if header.fortran_order:  # column-major: rows are not contiguous, read it whole
                    buf = fp.read(row_bytes * header.shape[0])
                    whole = np.frombuffer(buf, np.uint8).reshape(header.shape, order="F")
                    yield from whole[:count]
                    return
                for start in range(0, count, BLOCK):
                    n = min(BLOCK, count - start)
                    buf = fp.read(n * row_bytes)
                    if len(buf) < n * row_bytes:
                        raise EOFError(
                            f"{member} ended after {start + len(buf) // row_bytes} images"
                        )
                    yield from np.frombuffer(buf, np.uint8).reshape(n, *row_shape)
        except _READ_ERRORS as err:
            raise DataError(
                f"{self.source} is truncated or corrupt ({type(err).__name__}: {err})",
                "re-download the .npz",
            ) from None
