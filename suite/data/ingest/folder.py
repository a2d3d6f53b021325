"""A folder with one subfolder per class (the COVID-19 Radiography Database layout).

Accepted layouts, per class folder: ``CLASS/*.png`` or ``CLASS/images/*.png`` (the 2022 Kaggle
release also has ``CLASS/masks/``, lung masks of another size, which are skipped). Subfolders below a
class are searched recursively; PNG, JPEG, TIFF and BMP files are read, 8- or 16-bit.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from suite.data.ingest.base import Record, SourceAdapter, SourceInfo
from suite.data.ingest.imageio import list_images, read_image
from suite.data.ingest.options import IngestOptions
from suite.errors import DataError

SKIPPED_SUBFOLDERS = ("masks", "mask")


class FolderAdapter(SourceAdapter):
    name = "folder"

    def __init__(self, source: Path, options: IngestOptions) -> None:
        super().__init__(source, options)
        if not source.is_dir():
            raise DataError(
                f"{source} is not a folder", "pass a folder with one subfolder per class"
            )
        found = sorted(
            p.name for p in source.iterdir() if p.is_dir() and not p.name.startswith(".")
        )
        if not found:
            raise DataError(
                f"{source} has no class subfolders",
                "lay images out as SOURCE/<class name>/<image>.png (one subfolder per class)",
            )
        names = options.class_names or found
        unknown = [f for f in found if f not in names]
        if unknown:
            raise DataError(
                f"{source}: class folder(s) {', '.join(unknown)} are not in the class list",
                f"add them to --class-names (now: {', '.join(names)}) or move them out",
            )
        self.class_names = list(names)
        self.files: list[tuple[Path, int]] = []
        for label, name in enumerate(self.class_names):
            folder = source / name
            if not folder.is_dir():
                continue
            for path in list_images(folder):
                if any(part in SKIPPED_SUBFOLDERS for part in path.relative_to(folder).parts[:-1]):
                    continue
                self.files.append((path, label))
        if not self.files:
            raise DataError(
                f"{source}: the class folders hold no image files",
                "put PNG/JPEG/TIFF/BMP images in SOURCE/<class name>/",
            )

    @classmethod
    def sniff(cls, source: Path) -> bool:
        return source.is_dir() and any(p.is_dir() for p in source.iterdir())

    def info(self) -> SourceInfo:
        return SourceInfo(
            class_names=self.class_names,
            label_kind="multiclass",
            expected_count=len(self.files),
            split_policy="random",
            description=f"class folders {self.source.name}",
        )

    def records(self) -> Iterator[Record]:
        for path, label in self.files:
            yield Record(image=read_image(path), source=str(path), label=label)
