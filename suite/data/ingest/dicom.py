"""DICOM files (PS3.10): one file, or a folder of them, read with pydicom.

Pixels go through the standard grayscale pipeline of PS3.4 N.2.1: the Modality LUT (PS3.3 C.11.1:
Modality LUT Sequence or Rescale Slope/Intercept, so CT comes out in HU), then the VOI LUT (PS3.3
C.11.2: a manual ``--window-center/--window-width``, else the file's VOI LUT Sequence or Window
Center/Width when ``dicom_window="file"``), which maps to [0, 1]. Without a window the modality
values are returned raw and the pipeline clips them at percentiles. MONOCHROME1 (PS3.3 C.7.6.3.1.2:
the minimum value is white, common in CR) is inverted so that bone is bright and air dark.

Enhanced multi-frame files keep their rescale and window in the functional groups (PS3.3 C.7.6.16):
they are read per frame from there when the top-level attributes are absent.

Colour images (RGB, and YBR_FULL, YBR_FULL_422, YBR_ICT, YBR_RCT, which pydicom 3 and the JPEG /
JPEG 2000 decoders return as RGB) are returned as RGB, unwindowed (VOI windows are defined for
grayscale only); other photometric interpretations (PALETTE COLOR, ...) are refused.

Multi-frame files give one record per frame, ``path#frameN`` with N counted from 1 as DICOM's Frame
Number is. Records are grouped by Patient ID, so no split holds part of a patient. Folders are
searched recursively for ``*.dcm`` / ``*.dicom`` files, and for files without a suffix (or named by
a UID, "1.2.840...") that carry the "DICM" magic; DICOMDIR and hidden files are skipped.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels import apply_modality_lut, apply_voi, get_decoder, iter_pixels
from pydicom.uid import UID

from suite.data.ingest.base import Intensity, Record, SourceAdapter, SourceInfo
from suite.data.ingest.options import IngestOptions
from suite.errors import DataError

DICOM_SUFFIXES = (".dcm", ".dicom")
MAGIC_OFFSET = 128  # PS3.10 7.1: a 128-byte preamble, then "DICM"
MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
# Colour interpretations that pydicom (YBR_FULL/_422) or the JPEG / JPEG 2000 decoders (YBR_ICT/RCT,
# the J2K multi-component transforms) hand back as RGB.
COLOR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT")
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"  # the SOP class of a DICOMDIR (PS3.10 8.6)
SNIFF_FILES = 256  # files looked at before a folder is declared not-DICOM
INSTALL_DECODERS = (
    "pip install 'synmed-suite[dicom]' (pylibjpeg, pylibjpeg-openjpeg, pylibjpeg-libjpeg)"
)
REPLACE = (
    "the file is corrupt or truncated: replace it with a good copy or remove it from the source"
)


def has_dicom_magic(path: Path) -> bool:
    """True when ``path`` carries the PS3.10 "DICM" prefix after the 128-byte preamble."""
    try:
        with open(path, "rb") as f:
            f.seek(MAGIC_OFFSET)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def _is_candidate(path: Path) -> bool:
    # PACS exports often name files by SOP Instance UID ("1.2.840....123"), whose last dotted part
    # looks like a suffix: digits-only suffixes count as no suffix, and both need the magic.
    if path.name.upper() == "DICOMDIR" or path.name.startswith("."):
        return False
    suffix = path.suffix.lower()
    if suffix in DICOM_SUFFIXES:
        return True
    return (suffix == "" or suffix[1:].isdigit()) and has_dicom_magic(path)


def list_dicom_files(folder: Path) -> list[Path]:
    """DICOM files below ``folder``, recursively, sorted; hidden files and folders skipped."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(Path(root) / name for name in files if _is_candidate(Path(root) / name))
    return sorted(found)


@dataclass(frozen=True, slots=True)
class _Window:
    """A VOI window (PS3.3 C.11.2.1.2): center, width and the VOI LUT Function."""

    center: float
    width: float
    function: str = "LINEAR"

    def apply(self, values: np.ndarray) -> np.ndarray:
        """Map modality values to [0, 1] (the standard's output range scaled to 1)."""
        x = values.astype(np.float32)
        if self.function == "SIGMOID":  # C.11.2.1.3.1
            return (1.0 / (1.0 + np.exp(-4.0 * (x - self.center) / self.width))).astype(np.float32)
        if self.function == "LINEAR_EXACT":  # C.11.2.1.3.2
            return np.clip((x - self.center) / self.width + 0.5, 0.0, 1.0)
        # LINEAR, C.11.2.1.2.1: the -0.5 / -1 make integer inputs land on the integer grid
        if self.width <= 1:
            return (x > self.center - 0.5).astype(np.float32)
        return np.clip((x - (self.center - 0.5)) / (self.width - 1) + 0.5, 0.0, 1.0)


def _first(value: object) -> float:
    """The first value of a multi-valued DS element (alternative windows: the first one)."""
    if isinstance(value, (list, tuple, MultiValue)):
        value = value[0]
    return float(value)  # type: ignore[arg-type]


def _functional_item(ds: Dataset, frame: int, sequence: str) -> Dataset | None:
    """The per-frame item of a functional group macro, else the shared one (PS3.3 C.7.6.16)."""
    for groups, index in (
        ("PerFrameFunctionalGroupsSequence", frame),
        ("SharedFunctionalGroupsSequence", 0),
    ):
        items = ds.get(groups)
        if items and len(items) > index and items[index].get(sequence):
            return items[index].get(sequence)[0]
    return None


class DicomAdapter(SourceAdapter):
    name = "dicom"

    def __init__(self, source: Path, options: IngestOptions) -> None:
        super().__init__(source, options)
        self._check_window(options)
        self.class_names: list[str] = []
        self.files: list[tuple[Path, int | None]] = []
        if source.is_file():
            if options.class_names:
                raise DataError(
                    f"--class-names needs a folder of class subfolders; {source} is a file",
                    "pass the folder SOURCE/<class name>/*.dcm, or drop --class-names",
                )
            self.files = [(source, None)]
            return
        if not source.is_dir():
            raise DataError(
                f"DICOM source {source} does not exist", "pass a .dcm file or a folder of them"
            )
        if options.class_names:
            self._list_class_folders(source, list(options.class_names))
        else:
            self.files = [(path, None) for path in list_dicom_files(source)]
        if not self.files:
            raise DataError(
                f"{source} holds no DICOM files",
                "put .dcm files (or suffix-less files with the DICM preamble) in the folder",
            )

    @staticmethod
    def _check_window(options: IngestOptions) -> None:
        center, width = options.window_center, options.window_width
        if (center is None) != (width is None):
            raise DataError(
                "a manual DICOM window needs both --window-center and --window-width",
                "pass both (e.g. --window-center 40 --window-width 400: CT soft tissue) or neither",
            )
        if width is not None and width <= 0:
            raise DataError(f"--window-width {width} must be positive", "pass a width > 0")

    def _list_class_folders(self, source: Path, names: list[str]) -> None:
        for path in list_dicom_files(source):
            parts = path.relative_to(source).parts
            if len(parts) < 2:
                raise DataError(
                    f"{path} is not inside a class folder, but --class-names was given",
                    "lay files out as SOURCE/<class name>/*.dcm, or drop --class-names",
                )
            if parts[0] not in names:
                raise DataError(
                    f"{source}: class folder {parts[0]} is not in the class list",
                    f"add it to --class-names (now: {', '.join(names)}) or move it out",
                )
            self.files.append((path, names.index(parts[0])))
        self.class_names = names

    @classmethod
    def sniff(cls, source: Path) -> bool:
        if source.is_file():
            return source.suffix.lower() in DICOM_SUFFIXES or has_dicom_magic(source)
        if not source.is_dir():
            return False
        seen = 0
        for root, dirs, files in os.walk(source):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if _is_candidate(Path(root) / name):
                    return True
                seen += 1
                if seen >= SNIFF_FILES:
                    return False
        return False

    def info(self) -> SourceInfo:
        labelled = bool(self.class_names)
        return SourceInfo(
            class_names=self.class_names,
            label_kind="multiclass" if labelled else "none",
            expected_count=len(self.files),  # files, not frames: frame counts need every header
            split_policy="group",
            description=f"DICOM {self.source.name}",
        )

    def records(self) -> Iterator[Record]:
        for path, label in self.files:
            yield from self._file_records(path, label)

    # -- one file -------------------------------------------------------------------------------

    def _file_records(self, path: Path, label: int | None) -> Iterator[Record]:
        ds = self._read(path)
        if ds is None:
            return
        frames = _frame_count(path, ds)
        patient = str(ds.get("PatientID") or "").strip()
        pixels = iter_pixels(ds)
        for frame in range(frames):
            arr = self._next_frame(path, pixels, frame, frames)
            image, intensity = self._transform(ds, arr, frame)
            yield Record(
                image=image,
                source=str(path) if frames == 1 else f"{path}#frame{frame + 1}",
                label=label,
                group=patient or str(path),
                intensity=intensity,
            )

    def _read(self, path: Path) -> Dataset | None:
        """The dataset, checked for everything that can be checked before decoding."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                ds = pydicom.dcmread(path)
            except FileNotFoundError:
                raise DataError(f"DICOM file {path} does not exist", "fix the path") from None
            except InvalidDicomError as err:
                raise DataError(f"{path} is not a DICOM file ({err})", REPLACE) from None
            except Exception as err:  # pydicom raises many types on a damaged header
                raise DataError(
                    f"{path} cannot be read as DICOM ({_describe(err, caught)})", REPLACE
                ) from None
        sop_class = str(
            ds.get("SOPClassUID")
            or getattr(ds, "file_meta", Dataset()).get("MediaStorageSOPClassUID", "")
        )
        if sop_class == MEDIA_STORAGE_DIRECTORY:
            return None  # a DICOMDIR under another name: an index, not an image
        if "PixelData" not in ds:
            hint = f" ({_describe(None, caught)})" if caught else ""
            raise DataError(
                f"{path} has no pixel data{hint}: truncated, or not an image object "
                f"(SOP class {UID(sop_class).name if sop_class else 'unknown'})",
                "replace it with a good copy, or remove it (only image DICOMs can be ingested)",
            )
        photometric = str(ds.get("PhotometricInterpretation", "")).strip()
        if photometric not in MONOCHROME + COLOR:
            raise DataError(
                f"{path}: Photometric Interpretation {photometric or '(missing)'} is not supported",
                "only MONOCHROME1/2, RGB and YBR_* images are read: convert it to RGB "
                "(e.g. pydicom.pixels.apply_color_lut for PALETTE COLOR) or remove it",
            )
        bits = int(ds.get("BitsAllocated") or 0)
        if bits not in (8, 16):
            raise DataError(
                f"{path}: Bits Allocated {bits} is not supported (8- to 16-bit images only)",
                "convert it to an 8- or 16-bit image, or remove it (1-bit SEG and 32-bit dose "
                "grids are not images to train on)",
            )
        self._check_decoder(path, ds)
        return ds

    @staticmethod
    def _check_decoder(path: Path, ds: Dataset) -> None:
        meta = getattr(ds, "file_meta", Dataset())
        tsyntax = UID(str(meta.get("TransferSyntaxUID", "1.2.840.10008.1.2.1")))
        try:
            decoder = get_decoder(tsyntax)
        except NotImplementedError:
            raise DataError(
                f"{path}: transfer syntax {tsyntax.name} ({tsyntax}) has no decoder in pydicom",
                "convert it to an uncompressed transfer syntax (dcmtk `dcmdjpeg`, gdcm "
                "`gdcmconv --raw`) or remove it",
            ) from None
        if not decoder.is_available:
            missing = "; ".join(decoder.missing_dependencies)
            raise DataError(
                f"{path}: no decoder installed for transfer syntax {tsyntax.name} ({tsyntax})"
                + (f" [{missing}]" if missing else ""),
                INSTALL_DECODERS,
            )

    @staticmethod
    def _next_frame(
        path: Path, pixels: Iterator[np.ndarray], frame: int, frames: int
    ) -> np.ndarray:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                return next(pixels)
            except StopIteration:
                raise DataError(
                    f"{path}: only {frame} of {frames} frames could be decoded", REPLACE
                ) from None
            except Exception as err:  # any decoder failure: short data, bad codestream, ...
                where = f" (frame {frame + 1} of {frames})" if frames > 1 else ""
                raise DataError(
                    f"{path}: pixel data cannot be decoded{where}: {_describe(err, caught)}",
                    f"{REPLACE}; if it opens in a DICOM viewer, install the decoders: "
                    + INSTALL_DECODERS,
                ) from None

    # -- pixels ---------------------------------------------------------------------------------

    def _transform(self, ds: Dataset, arr: np.ndarray, frame: int) -> tuple[np.ndarray, Intensity]:
        """Decoded stored values of one frame -> (image, intensity) following PS3.4 N.2.1."""
        if str(ds.PhotometricInterpretation) not in MONOCHROME:
            # already RGB (YBR converted by the decoder); uint8 passes unchanged, 16-bit is clipped
            return (arr if arr.dtype == np.uint8 else arr.astype(np.float32)), "raw"
        values = _modality(ds, arr, frame)
        inverted = ds.PhotometricInterpretation == "MONOCHROME1"
        window = self._window(ds, frame)
        if window is not None:
            unit = window.apply(values)
        elif self.options.dicom_window == "file" and ds.get("VOILUTSequence"):
            unit = _voi_lut(ds, values)
        else:
            return _raw(values, inverted), "raw"
        return ((1.0 - unit) if inverted else unit).astype(np.float32), "unit"

    def _window(self, ds: Dataset, frame: int) -> _Window | None:
        """The manual window, else the file's (first) window when asked for, else None."""
        opts = self.options
        if opts.window_center is not None and opts.window_width is not None:
            return _Window(float(opts.window_center), float(opts.window_width))
        if opts.dicom_window != "file":
            return None
        holder: Dataset | None = ds if "WindowCenter" in ds and "WindowWidth" in ds else None
        if holder is None:
            holder = _functional_item(ds, frame, "FrameVOILUTSequence")
        if holder is None or ds.get("VOILUTSequence"):  # a VOI LUT table wins, as in pydicom
            return None
        try:
            window = _Window(
                _first(holder.WindowCenter),
                _first(holder.WindowWidth),
                str(holder.get("VOILUTFunction") or "LINEAR").upper(),
            )
        except (AttributeError, ValueError, TypeError, IndexError):
            return None  # a malformed window: fall back to percentile clipping
        if window.width <= 0 or window.function not in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
            return None
        return window


def _frame_count(path: Path, ds: Dataset) -> int:
    try:
        frames = int(ds.get("NumberOfFrames") or 1)
    except (TypeError, ValueError):
        frames = 0
    if frames < 1:
        raise DataError(
            f"{path}: Number of Frames {ds.get('NumberOfFrames')!r} is not a count", REPLACE
        )
    return frames


def _modality(ds: Dataset, arr: np.ndarray, frame: int) -> np.ndarray:
    """Stored values -> modality values (PS3.3 C.11.1), e.g. CT numbers in HU."""
    if ds.get("ModalityLUTSequence") or ("RescaleSlope" in ds and "RescaleIntercept" in ds):
        return apply_modality_lut(arr, ds)
    item = _functional_item(ds, frame, "PixelValueTransformationSequence")
    if item is not None and "RescaleSlope" in item and "RescaleIntercept" in item:
        return arr.astype(np.float64) * float(item.RescaleSlope) + float(item.RescaleIntercept)
    return arr


def _voi_lut(ds: Dataset, values: np.ndarray) -> np.ndarray:
    """The file's first VOI LUT table (PS3.3 C.11.2.1.1) applied and scaled to [0, 1].

    Scaled by the table's own output range, not by the bit depth in its LUT Descriptor, which is
    often mis-stated (16 for 12-bit data).
    """
    item = ds.VOILUTSequence[0]
    entries, first = int(item.LUTDescriptor[0]) or 2**16, int(item.LUTDescriptor[1])
    table = apply_voi(np.arange(first, first + entries, dtype=np.int64), ds).astype(np.float32)
    out = apply_voi(np.rint(values).astype(np.int64), ds).astype(np.float32)
    lo, hi = float(table.min()), float(table.max())
    return (out - lo) / (hi - lo) if hi > lo else np.zeros_like(out)


def _raw(values: np.ndarray, inverted: bool) -> np.ndarray:
    """Unwindowed modality values; MONOCHROME1 flipped around the frame's own range."""
    if values.dtype == np.uint8:  # 8-bit without a modality transform is display-ready: keep it
        if not inverted:
            return values
        return (int(values.min()) + int(values.max()) - values.astype(np.int16)).astype(np.uint8)
    out = values.astype(np.float32)
    if inverted:
        out = float(out.min()) + float(out.max()) - out
    return out


def _describe(err: BaseException | None, caught: list[warnings.WarningMessage]) -> str:
    parts = [f"{type(err).__name__}: {err}"] if err is not None else []
    parts += [str(w.message) for w in caught[-2:]]
    return "; ".join(parts) or "unknown error"
