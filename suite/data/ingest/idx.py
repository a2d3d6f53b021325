"""IDX files: MNIST and Fashion-MNIST (http://yann.lecun.com/exdb/mnist/, "FILE FORMATS").

SOURCE is a folder with ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each optionally gzipped (``.gz``, as
distributed) and optionally spelled with a dot (``train-images.idx3-ubyte``, the Kaggle copies).
train is the official train split, t10k the test split; val is carved out of train by the pipeline.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of dimensions), one
big-endian uint32 per dimension, then the data in C order, big-endian.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from suite.data.ingest.base import Record, SourceAdapter, SourceInfo
from suite.data.ingest.options import IngestOptions
from suite.data.ingest.splits import split_quotas
from suite.errors import DataError

# Type codes of the IDX format (the third magic byte).
IDX_TYPES: dict[int, str] = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}

# Zalando's Fashion-MNIST README, label table (ids 0..9).
FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]

# (file prefix, split) in the order records are yielded.
PARTS = (("train", "train"), ("t10k", "test"))
BLOCK = 1024  # rows decoded per read: large enough to amortise gzip, small enough for any size
_READ_ERRORS = (OSError, EOFError, zlib.error)  # gzip.BadGzipFile is an OSError


@dataclass(frozen=True, slots=True)
class IDXHeader:
    path: Path
    dtype: np.dtype
    shape: tuple[int, ...]

    @property
    def offset(self) -> int:
        return 4 + 4 * len(self.shape)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def _open(path: Path) -> BinaryIO:
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")  # noqa: SIM115


def _stored_size(path: Path) -> int:
    """Size of the (decompressed) file; for gzip the ISIZE trailer (RFC 1952), so no inflating."""
    if path.suffix != ".gz":
        return path.stat().st_size
    with open(path, "rb") as f:
        f.seek(0, 2)
        if f.tell() < 18:  # smaller than an empty gzip member: certainly cut short
            return -1
        f.seek(-4, 2)
        return int.from_bytes(f.read(4), "little")


def read_header(path: Path) -> IDXHeader:
    """Parse and check an IDX header, and that the file holds exactly the data it announces.

    Raises:
        DataError: naming the file when it is not IDX or is truncated.
    """
    fix = "re-download or re-extract it (MNIST-format IDX, optionally .gz)"
    try:
        with _open(path) as f:
            magic = f.read(4)
            if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] not in IDX_TYPES:
                raise DataError(
                    f"{path} is not an IDX file (magic bytes {magic.hex() or 'none'})", fix
                )
            ndim = magic[3]
            raw = f.read(4 * ndim)
    except _READ_ERRORS as err:
        raise DataError(f"{path} cannot be read ({type(err).__name__}: {err})", fix) from None
    if len(raw) < 4 * ndim:
        raise DataError(f"{path} is truncated inside its header", fix)
    header = IDXHeader(
        path, np.dtype(IDX_TYPES[magic[2]]), tuple(int(d) for d in np.frombuffer(raw, ">u4"))
    )
    expected = header.offset + header.nbytes
    size = _stored_size(path)
    if path.suffix == ".gz":
        # ISIZE is the length modulo 2**32; a cut-off .gz ends in deflate bytes, not the trailer
        expected %= 1 << 32
    if size != expected:
        shape = "x".join(map(str, header.shape))
        raise DataError(
            f"{path} is truncated or corrupt: its header announces {shape} "
            f"{header.dtype.name} ({expected} bytes) but the file holds {size} bytes",
            fix,
        )
    return header


def _find(folder: Path, prefix: str, kind: str, dims: int) -> Path | None:
    """The file for e.g. train images: plain before .gz, dash before dot spelling."""
    for sep in ("-", "."):
        for suffix in ("", ".gz"):
            path = folder / f"{prefix}-{kind}{sep}idx{dims}-ubyte{suffix}"
            if path.is_file():
                return path
    return None


@dataclass(frozen=True, slots=True)
class _Part:
    split: str
    images: IDXHeader
    labels_path: Path
    labels: np.ndarray


class IDXAdapter(SourceAdapter):
    name = "idx"

    def __init__(self, source: Path, options: IngestOptions) -> None:
        super().__init__(source, options)
        if not source.is_dir():
            raise DataError(
                f"{source} is not a folder",
                "pass the folder holding train-images-idx3-ubyte(.gz), train-labels-idx1-ubyte(.gz), ...",
            )
        self.parts: list[_Part] = []
        for prefix, split in PARTS:
            images = _find(source, prefix, "images", 3)
            labels = _find(source, prefix, "labels", 1)
            if images is None and labels is None:
                continue
            if images is None or labels is None:
                have, want = (images, "labels-idx1") if labels is None else (labels, "images-idx3")
                raise DataError(
                    f"{have} has no partner file {prefix}-{want}-ubyte(.gz) in {source}",
                    "put the images and labels files of each split side by side",
                )
            self.parts.append(self._read_part(split, images, labels))
        if not self.parts:
            raise DataError(
                f"{source} holds no IDX files",
                "expected train-images-idx3-ubyte(.gz) + train-labels-idx1-ubyte(.gz) "
                "and/or t10k-images-idx3-ubyte(.gz) + t10k-labels-idx1-ubyte(.gz)",
            )
        top = max(int(p.labels.max(initial=0)) for p in self.parts)
        self.fashion = "fashion" in str(source.resolve()).lower()
        if options.class_names:
            self.class_names = list(options.class_names)
        elif self.fashion:
            self.class_names = list(FASHION_MNIST_CLASSES)
        else:  # MNIST digits; EMNIST-style sets with more classes get one name per id
            self.class_names = [str(i) for i in range(max(10, top + 1))]
        for part in self.parts:
            bad = np.flatnonzero(part.labels >= len(self.class_names))
            if len(bad):
                raise DataError(
                    f"{part.labels_path}: label "
                    f"{int(part.labels[bad[0]])} (row {int(bad[0])}) is outside the "
                    f"{len(self.class_names)} classes",
                    f"classes: {', '.join(self.class_names)}; pass --class-names with one name per id",
                )
        self.quotas = split_quotas([len(p.labels) for p in self.parts], options.limit)

    @staticmethod
    def _read_part(split: str, images_path: Path, labels_path: Path) -> _Part:
        images = read_header(images_path)
        labels = read_header(labels_path)
        if len(images.shape) != 3:
            raise DataError(
                f"{images_path}: images must be 3-dimensional (count, rows, columns), "
                f"the header says {len(images.shape)}",
                "pass an idx3 images file",
            )
        if len(labels.shape) != 1 or labels.dtype.kind not in "iu":
            raise DataError(
                f"{labels_path}: labels must be one integer per image, the header says "
                f"{labels.dtype.name} of shape {labels.shape}",
                "pass an idx1 labels file",
            )
        if labels.shape[0] != images.shape[0]:
            raise DataError(
                f"{images_path} holds {images.shape[0]} images but {labels_path} holds "
                f"{labels.shape[0]} labels",
                "pair each images file with the labels file of the same split",
            )
        try:
            with _open(labels_path) as f:
                f.read(labels.offset)
                values = np.frombuffer(f.read(labels.nbytes), dtype=labels.dtype)
        except _READ_ERRORS as err:
            raise DataError(
                f"{labels_path} cannot be read ({type(err).__name__}: {err})", "re-download it"
            ) from None
        if len(values) != labels.shape[0]:
            raise DataError(f"{labels_path} is truncated", "re-download it")
        if values.min(initial=0) < 0:
            raise DataError(
                f"{labels_path} holds negative labels", "labels must be class ids 0..K-1"
            )
        return _Part(split, images, labels_path, values.astype(np.int64))

    @classmethod
    def sniff(cls, source: Path) -> bool:
        return source.is_dir() and any(source.glob("*idx3-ubyte*"))

    def info(self) -> SourceInfo:
        what = "Fashion-MNIST" if self.fashion else "MNIST-format"
        parts = " + ".join(f"{p.split} {len(p.labels)}" for p in self.parts)
        return SourceInfo(
            class_names=self.class_names,
            label_kind="multiclass",
            expected_count=sum(self.quotas),
            split_policy="given",
            description=f"IDX {what} {self.source.name} ({parts})",
        )

    def records(self) -> Iterator[Record]:
        for part, quota in zip(self.parts, self.quotas, strict=True):
            for i, image in enumerate(self._images(part.images, quota)):
                # no patients: each image is its own group (the pipeline's default)
                yield Record(
                    image=image,
                    source=f"{part.images.path}#{i}",
                    label=int(part.labels[i]),
                    split=part.split,
                )

    @staticmethod
    def _images(header: IDXHeader, count: int) -> Iterator[np.ndarray]:
        """Stream the first ``count`` images, a block at a time (never the whole file in memory)."""
        row_shape = header.shape[1:]
        row_bytes = int(np.prod(row_shape, dtype=np.int64)) * header.dtype.itemsize
        native = header.dtype.newbyteorder("=")
        try:
            with _open(header.path) as f:
                f.read(header.offset)
                for start in range(0, count, BLOCK):
                    n = min(BLOCK, count - start)
                    buf = f.read(n * row_bytes)
                    if len(buf) < n * row_bytes:
                        raise EOFError(f"ended after {start + len(buf) // row_bytes} images")
                    yield from (
                        np.frombuffer(buf, header.dtype).reshape(n, *row_shape).astype(native)
                    )
        except _READ_ERRORS as err:
            raise DataError(
                f"{header.path} is truncated or corrupt ({type(err).__name__}: {err})",
                "re-download or re-extract it",
            ) from None
