"""NIH ChestX-ray14 (Wang et al., "ChestX-ray8", CVPR 2017; https://nihcc.app.box.com/v/ChestXray-NIHCC).

SOURCE is the folder holding ``Data_Entry_2017.csv`` (or the CSV itself; the 2020 re-release names
it ``Data_Entry_2017_v2020.csv``). Of its columns, "Image Index", "Finding Labels" (findings joined
by "|", or "No Finding") and "Patient ID" are used. Labels are multi-hot over the 14 findings in the
order of the release's README. When ``train_val_list.txt`` and ``test_list.txt`` sit beside the CSV,
they are the official patient-disjoint split; otherwise the pipeline splits by patient.

Images are found by name below SOURCE (the release unpacks to ``images_001/images/*.png`` ...
``images_012/images/*.png``) or below ``--images-dir``. Every image that will be read must exist
before anything is written; with ``--limit N`` only the first N are needed, so a partial download
(e.g. ``images_001`` only) can be looked at.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from suite.data.ingest.base import Record, SourceAdapter, SourceInfo, check_class_names
from suite.data.ingest.imageio import IMAGE_SUFFIXES, read_image
from suite.data.ingest.options import IngestOptions
from suite.errors import DataError

# The release README's label list, in its order (ids 0..13).
NIH_FINDINGS = [
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
]
NO_FINDING = "No Finding"
CSV_NAME = "Data_Entry_2017.csv"
COLUMNS = ("Image Index", "Finding Labels", "Patient ID")
SPLIT_LISTS = (("train_val_list.txt", "train"), ("test_list.txt", "test"))


@dataclass(frozen=True, slots=True)
class _Row:
    name: str
    label: np.ndarray  # (K,) uint8 multi-hot
    patient: str
    split: str | None
    line: int


def _find_csv(source: Path) -> Path:
    if source.is_file():
        return source
    if not source.is_dir():
        raise DataError(f"{source} does not exist", f"pass the folder holding {CSV_NAME}")
    if (source / CSV_NAME).is_file():
        return source / CSV_NAME
    found = sorted(source.glob("Data_Entry_2017*.csv"))
    if len(found) == 1:
        return found[0]
    if found:
        raise DataError(
            f"{source} holds several label files: {', '.join(p.name for p in found)}",
            "pass the CSV to use as SOURCE",
        )
    raise DataError(
        f"{source} has no {CSV_NAME}", f"pass the folder holding {CSV_NAME}, or the CSV"
    )


class NIHAdapter(SourceAdapter):
    name = "nih"

    def __init__(self, source: Path, options: IngestOptions) -> None:
        super().__init__(source, options)
        self.csv = _find_csv(source)
        self.class_names = list(options.class_names or NIH_FINDINGS)
        rows = self._read_csv()
        rows, self.skipped, self.has_lists = self._apply_lists(rows)
        if options.limit is not None:
            rows = rows[: options.limit]
        root = options.images_dir or self.csv.parent
        if not root.is_dir():
            raise DataError(f"images folder {root} does not exist", "fix --images-dir")
        paths = _index_images(root, {r.name for r in rows})
        missing = [r for r in rows if r.name not in paths]
        if missing:
            first = missing[0]
            raise DataError(
                f"{self.csv} line {first.line}: image {first.name} is not found below {root} "
                f"({len(missing)} of {len(rows)} listed images are missing)",
                "unpack all images_0NN archives below the source folder or pass --images-dir "
                "(--limit N reads only the first N rows)",
            )
        self.rows = [(paths[r.name], r) for r in rows]

    def _read_csv(self) -> list[_Row]:
        index = {name: i for i, name in enumerate(self.class_names)}
        try:
            with open(self.csv, newline="", encoding="utf-8-sig") as f:
                reader = csv.reader(f)
                header = [h.strip() for h in next(reader, [])]
                # the release's header ends in a comma and splits "OriginalImage[Width,Height]" in
                # two, which lines up with the two values rows hold there: positions are reliable
                have = [h for h in header if h]
                absent = [c for c in COLUMNS if c not in header]
                if absent:
                    raise DataError(
                        f"{self.csv}: column(s) {', '.join(absent)} missing "
                        f"(the CSV has: {', '.join(have) or 'no header'})",
                        f"use the release's {CSV_NAME}, whose columns include {', '.join(COLUMNS)}",
                    )
                at = [header.index(c) for c in COLUMNS]
                rows: list[_Row] = []
                seen: dict[str, int] = {}
                for line, fields in enumerate(reader, start=2):
                    if not any(x.strip() for x in fields):
                        continue
                    if len(fields) <= max(at):
                        raise DataError(
                            f"{self.csv} line {line}: {len(fields)} fields, too few for the header",
                            "repair the row or re-download the CSV",
                        )
                    name, findings, patient = (fields[i].strip() for i in at)
                    if Path(name).name != name or "\\" in name or name in ("", ".", ".."):
                        raise DataError(
                            f"{self.csv} line {line}: Image Index {name!r} is not a file name",
                            "list file names only (e.g. 00000001_000.png); images are found by "
                            "name below the source or --images-dir",
                        )
                    if name in seen:
                        raise DataError(
                            f"{self.csv} line {line}: image {name} is listed again "
                            f"(first on line {seen[name]})",
                            "remove the duplicate row",
                        )
                    seen[name] = line
                    label = self._multi_hot(findings, index, line, name)
                    rows.append(_Row(name, label, patient, None, line))
        except (OSError, UnicodeDecodeError, csv.Error) as err:
            raise DataError(
                f"{self.csv} cannot be read ({type(err).__name__}: {err})",
                "re-download the CSV",
            ) from None
        return rows

    def _multi_hot(self, findings: str, index: dict[str, int], line: int, name: str) -> np.ndarray:
        label = np.zeros(len(self.class_names), dtype=np.uint8)
        for finding in (f.strip() for f in findings.split("|")):
            if finding == NO_FINDING:
                continue
            check_class_names([finding], f"{self.csv} line {line} ({name})")
            if finding not in index:
                raise DataError(
                    f"{self.csv} line {line} ({name}): finding {finding!r} is not in the class "
                    f"list",
                    f"classes: {', '.join(self.class_names)}; add it to --class-names or fix the row",
                )
            label[index[finding]] = 1
        return label

    def _apply_lists(self, rows: list[_Row]) -> tuple[list[_Row], int, bool]:
        """Rows with their official split; rows in neither list are dropped and counted."""
        folder = self.csv.parent
        present = [
            (folder / name, split) for name, split in SPLIT_LISTS if (folder / name).is_file()
        ]
        if not present:
            return rows, 0, False
        if len(present) == 1:
            have = present[0][0]
            other = next(folder / n for n, _ in SPLIT_LISTS if folder / n != have)
            raise DataError(
                f"{have} is there but {other.name} is not",
                "put both official list files beside the CSV, or neither (split by patient)",
            )
        split_of: dict[str, str] = {}
        for path, split in present:
            try:
                names = path.read_text(encoding="utf-8").split()
            except (OSError, UnicodeDecodeError) as err:
                raise DataError(f"{path} cannot be read ({err})", "re-download it") from None
            for name in names:
                if split_of.get(name, split) != split:
                    raise DataError(
                        f"{name} is in both {SPLIT_LISTS[0][0]} and {SPLIT_LISTS[1][0]}",
                        "repair the list files (the official ones are disjoint)",
                    )
                split_of[name] = split
        kept = [
            _Row(r.name, r.label, r.patient, split_of[r.name], r.line)
            for r in rows
            if r.name in split_of
        ]
        return kept, len(rows) - len(kept), True

    @classmethod
    def sniff(cls, source: Path) -> bool:
        if source.is_dir():
            return any(source.glob("Data_Entry_2017*.csv"))
        if source.is_file() and source.suffix.lower() == ".csv":
            with open(source, encoding="utf-8-sig", errors="replace") as f:
                first = f.readline()
            return all(c in first for c in COLUMNS)
        return False

    def info(self) -> SourceInfo:
        how = "official train_val/test lists" if self.has_lists else "no split lists: by patient"
        skipped = f", {self.skipped} images in neither list skipped" if self.skipped else ""
        return SourceInfo(
            class_names=self.class_names,
            label_kind="multilabel",
            expected_count=len(self.rows),
            split_policy="given" if self.has_lists else "group",
            description=f"NIH ChestX-ray14 {self.csv.name} ({len(self.rows)} images, {how}{skipped})",
        )

    def records(self) -> Iterator[Record]:
        for path, row in self.rows:
            yield Record(
                image=read_image(path),
                source=str(path),
                label=row.label,
                group=row.patient,
                split=row.split,
            )


def _index_images(root: Path, wanted: set[str]) -> dict[str, Path]:
    """Name -> path of the wanted images below ``root``, in one walk (sorted: first copy wins)."""
    found: dict[str, Path] = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name in wanted and name not in found and name.lower().endswith(IMAGE_SUFFIXES):
                found[name] = Path(folder) / name
    return found
