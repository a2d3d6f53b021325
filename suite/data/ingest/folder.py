"""A folder with one subfolder per class (the COVID-19 Radiography Database layout).

Accepted layouts, per class folder: ``CLASS/*.png`` or ``CLASS/images/*.png`` (the 2022 Kaggle
release also has ``CLASS/masks/``, lung masks of another size, which are skipped). Subfolders below a
class are searched recursively; PNG, JPEG, TIFF and BMP files are read, 8- or 16-bit.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from pathlib import Path

from suite.data.ingest.base import Record, SourceAdapter, SourceInfo, check_class_names, inside
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
            p.name
            for p in source.iterdir()
            if not p.name.startswith(".") and (p.is_symlink() or p.is_dir())
        )
        for name in found:
            _check_link(source, source / name, found)
        found = [name for name in found if (source / name).is_dir()]
        if not found:
            raise DataError(
                f"{source} has no class subfolders",
                "lay images out as SOURCE/<class name>/<image>.png (one subfolder per class)",
            )
        names = options.class_names or found
        check_class_names(
            list(names), "--class-names" if options.class_names else f"the folder names of {source}"
        )
        unknown = [f for f in found if f not in names]
        if unknown:
            raise DataError(
                f"{source}: class folder(s) {', '.join(unknown)} are not in the class list",
                f"add them to --class-names (now: {', '.join(names)}) or move them out",
            )
        self.class_names = list(names)
        self.files: list[tuple[Path, int]] = []
        for label, name in enumerate(self.class_names):
            folder = inside(source, source / name, f"class folder of class {name!r}")
            if folder.is_dir():
                self._add_class(folder, label)
        if not self.files:
            raise DataError(
                f"{source}: the class folders hold no image files",
                "put PNG/JPEG/TIFF/BMP images in SOURCE/<class name>/",
            )

    def _add_class(self, folder: Path, label: int) -> None:
        """Collect the image files of one class folder into ``self.files``."""
        for path in list_images(folder):
            if any(part in SKIPPED_SUBFOLDERS for part in path.relative_to(folder).parts[:-1]):
                continue
            self.files.append((path, label))

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


def _check_link(source: Path, folder: Path, classes: list[str]) -> None:
    """Refuse a class folder that is a link looping back, leaving the source, or onto another
    class: each would read images twice, under a class that is not theirs, or from elsewhere."""
    if not folder.is_symlink():
        return
    fix = (
        "replace the link with a real folder, or point --source at the folder holding the real data"
    )
    try:
        target = folder.resolve(strict=True)
    except FileNotFoundError:
        return  # a dangling link holds nothing; it is skipped like any non-folder
    except (RuntimeError, OSError) as err:  # 3.11 raises RuntimeError on a loop, later ones ELOOP
        if isinstance(err, OSError) and err.errno != errno.ELOOP:
            raise
        raise DataError(f"class folder {folder} is a symlink loop", fix) from None
    if not target.is_dir():
        return
    root = source.resolve()
    if target == root or target in root.parents:
        raise DataError(
            f"class folder {folder} is a symlink to {target}, the source or a folder above it: "
            "every image would be read again under a class of its own",
            fix,
        )
    if root not in target.parents:
        raise DataError(
            f"class folder {folder} is a symlink to {target}, outside the source {source}", fix
        )
    top = target.relative_to(root).parts[0]
    if top in classes and top != folder.name:
        raise DataError(
            f"class folder {folder} is a symlink into the class folder {top}: its images would be "
            "read twice, under two classes",
            fix,
        )
