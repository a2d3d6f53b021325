"""COVIDx CXR (Wang, Lin & Wong, COVID-Net, Sci. Rep. 2020; CXR-4: Wu et al., arXiv 2311.17677).

Layout of the Kaggle release (https://www.kaggle.com/datasets/andyczhao/covidx-cxr2) and of the
COVID-Net repository's lindawangg/COVID-Net:docs/COVIDx.md: SOURCE holds ``train.txt``, ``val.txt`` and ``test.txt``
(any of them; CXR-2 has no val) and the image folders ``train/``, ``val/``, ``test/``. Each line is
``patient_id filename label data_source``, separated by spaces; CXR-2/3/4 labels are "positive" and
"negative" (COVID-19). The official splits are patient-disjoint and are kept.

Earlier COVIDx versions (three classes: normal, pneumonia, COVID-19) read the same way with
``--class-names``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from suite.data.ingest.base import Record, SourceAdapter, SourceInfo, check_class_names, inside
from suite.data.ingest.imageio import read_image
from suite.data.ingest.options import IngestOptions
from suite.data.ingest.splits import split_quotas
from suite.errors import DataError

CLASS_NAMES = ["negative", "positive"]
SPLIT_NAMES = ("train", "val", "test")
FIELDS = ("patient_id", "filename", "label", "data_source")


@dataclass(frozen=True, slots=True)
class _Row:
    path: Path
    label: int
    patient: str
    split: str


def _first_line_fits(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.strip():
                    return len(line.split()) == len(FIELDS)
    except OSError:
        pass
    return False


class COVIDxAdapter(SourceAdapter):
    name = "covidx"

    def __init__(self, source: Path, options: IngestOptions) -> None:
        super().__init__(source, options)
        if not source.is_dir():
            raise DataError(
                f"{source} is not a folder", "pass the folder holding train.txt, val.txt, test.txt"
            )
        lists = [(source / f"{s}.txt", s) for s in SPLIT_NAMES if (source / f"{s}.txt").is_file()]
        if not lists:
            raise DataError(
                f"{source} has none of train.txt, val.txt, test.txt",
                "pass the COVIDx folder (the label files sit beside the train/ val/ test/ folders)",
            )
        self.class_names = list(options.class_names or CLASS_NAMES)
        self.images_root = options.images_dir or source
        if not self.images_root.is_dir():
            raise DataError(f"images folder {self.images_root} does not exist", "fix --images-dir")
        per_split = [self._read_list(path, split) for path, split in lists]
        quotas = split_quotas([len(rows) for rows in per_split], options.limit)
        self.rows = [r for rows, q in zip(per_split, quotas, strict=True) for r in rows[:q]]
        missing = [r for r in self.rows if not r.path.is_file()]
        if missing:
            raise DataError(
                f"image {missing[0].path} does not exist ({len(missing)} of {len(self.rows)} "
                "listed images are missing)",
                "unpack the image folders train/ val/ test/ beside the .txt files, or pass "
                "--images-dir",
            )
        self.counts = {split: len(rows) for (_, split), rows in zip(lists, per_split, strict=True)}

    def _read_list(self, path: Path, split: str) -> list[_Row]:
        index = {name: i for i, name in enumerate(self.class_names)}
        rows: list[_Row] = []
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise DataError(f"{path} cannot be read ({err})", "re-download it") from None
        for number, line in enumerate(text.splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != len(FIELDS):
                raise DataError(
                    f"{path} line {number}: {len(fields)} fields, expected {len(FIELDS)} "
                    f"({' '.join(FIELDS)}): {line.strip()[:120]!r}",
                    "repair the line (fields are separated by single spaces) or re-download the file",
                )
            patient, filename, label, _data_source = fields
            check_class_names([label], f"{path} line {number}")
            if label not in index:
                raise DataError(
                    f"{path} line {number}: label {label!r} is not in the class list",
                    f"classes: {', '.join(self.class_names)}; pass --class-names for other "
                    "COVIDx versions",
                )
            image = self._image_path(split, filename)
            inside(self.images_root, image, f"{path} line {number}: image")
            rows.append(_Row(image, index[label], patient, split))
        return rows

    def _image_path(self, split: str, filename: str) -> Path:
        nested = self.images_root / split / filename
        # --images-dir may also point straight at one flat folder of images
        if not nested.is_file() and self.options.images_dir is not None:
            flat = self.images_root / filename
            if flat.is_file():
                return flat
        return nested

    @classmethod
    def sniff(cls, source: Path) -> bool:
        # the image folder too: a class folder with a four-word notes file is not COVIDx
        return source.is_dir() and any(
            _first_line_fits(source / f"{s}.txt") and (source / s).is_dir()
            for s in ("train", "test")
        )

    def info(self) -> SourceInfo:
        parts = ", ".join(f"{split} {n}" for split, n in self.counts.items())
        return SourceInfo(
            class_names=self.class_names,
            label_kind="multiclass",
            expected_count=len(self.rows),
            split_policy="given",
            description=f"COVIDx {self.source.name} ({parts})",
        )

    def records(self) -> Iterator[Record]:
        for row in self.rows:
            yield Record(
                image=read_image(row.path),
                source=str(row.path),
                label=row.label,
                group=row.patient,
                split=row.split,
            )
