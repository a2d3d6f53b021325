"""Class folders of 2D images, each with its segmentation mask(s) beside it (the BUSI layout).

``SOURCE/CLASS/NAME.png`` with ``SOURCE/CLASS/NAME_mask.png``, and for an image with several
findings also ``NAME_mask_1.png``, ``NAME_mask_2.png`` ...: the masks of one image are merged by
union into one binary mask (0 background, 1 foreground). The class is the folder (BUSI: benign,
malignant, normal). Any image suffix the folder format reads is accepted for images and masks;
subfolders are searched recursively and an image pairs only with masks in its own folder.

A mask pixel is foreground when it reaches ``mask_threshold`` of the full scale (0.5: above 127
of 255); an RGB mask counts a pixel when any channel does. ``prepare`` then resizes the mask with
nearest neighbour under the image's own ``--aspect`` policy, so image and mask stay aligned.

Strict by default: a mask without its image, an image without a mask (unless ``missing_masks`` is
"empty"), a mask whose size differs from its image, and a non-empty mask with no pixel at the
threshold (0/1 masks) each stop the ingest, naming the file. ``min_foreground`` (a NIfTI slice
filter) does not apply: every image of a 2D dataset is a sample; ``min_mask_pixels`` does.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from suite.data.ingest.base import Record, SourceInfo
from suite.data.ingest.folder import FolderAdapter
from suite.data.ingest.imageio import IMAGE_SUFFIXES, list_images, read_image
from suite.data.ingest.options import IngestOptions
from suite.errors import DataError

MASK_NAME = re.compile(r"^(?P<stem>.+)_mask(?:_(?P<number>\d+))?$", re.IGNORECASE)
SNIFF_FILES = 256  # files looked at before a folder is declared not to hold image+mask pairs
DEFAULT_MASK_NAMES = ["background", "foreground"]


class ImageMasksAdapter(FolderAdapter):
    name = "image_masks"

    def __init__(self, source: Path, options: IngestOptions) -> None:
        if not 0.0 < options.mask_threshold <= 1.0:
            raise DataError(
                f"mask_threshold {options.mask_threshold} is outside (0, 1]",
                "pass a fraction of the full scale, e.g. --mask-threshold 0.5 (above 127 of 255)",
            )
        if options.mask_names is not None and len(options.mask_names) != 2:
            raise DataError(
                f"--mask-names has {len(options.mask_names)} names, but image_masks masks are "
                "binary",
                "give two names, background first: --mask-names background,lesion",
            )
        self.masks: dict[Path, list[Path]] = {}  # filled by _add_class during super().__init__
        super().__init__(source, options)

    def _add_class(self, folder: Path, label: int) -> None:
        images: dict[tuple[Path, str], Path] = {}
        masks: dict[tuple[Path, str], list[Path]] = {}
        for path in list_images(folder):
            match = MASK_NAME.match(path.stem)
            if match:
                masks.setdefault((path.parent, match["stem"]), []).append(path)
                continue
            key = (path.parent, path.stem)
            if key in images:
                raise DataError(
                    f"images {images[key]} and {path} share the name {path.stem!r}: which one "
                    f"{path.stem}_mask belongs to is ambiguous",
                    "rename or remove one of the two",
                )
            images[key] = path
        for key, found in masks.items():
            if key not in images:
                raise DataError(
                    f"mask {found[0]} has no image {key[1]}.png (or .jpg, .tif, .bmp) beside it",
                    "add its image, fix the mask's name (IMAGE_mask.png, IMAGE_mask_1.png ...), "
                    "or move the mask out of the source",
                )
        for key, image in images.items():
            found = masks.get(key, [])
            if not found and self.options.missing_masks == "error":
                raise DataError(
                    f"image {image} has no mask {key[1]}_mask.png beside it",
                    "add its mask (an all-black one for an image without findings), or pass "
                    "--missing-masks empty to give such images an empty mask",
                )
            self.files.append((image, label))
            self.masks[image] = found

    @classmethod
    def sniff(cls, source: Path) -> bool:
        """A folder of class folders holding at least one ``*_mask.*`` image file."""
        if not source.is_dir():
            return False
        seen = 0
        for root, dirs, files in os.walk(source):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            if Path(root) == source:
                continue  # images sit in class folders, never at the top
            for name in files:
                path = Path(name)
                if path.suffix.lower() in IMAGE_SUFFIXES and MASK_NAME.match(path.stem):
                    return True
                seen += 1
                if seen >= SNIFF_FILES:
                    return False
        return False

    def info(self) -> SourceInfo:
        return SourceInfo(
            class_names=self.class_names,
            label_kind="multiclass",
            mask_names=list(self.options.mask_names or DEFAULT_MASK_NAMES),
            expected_count=len(self.files),
            split_policy="random",
            description=f"image+mask folders {self.source.name}",
        )

    def records(self) -> Iterator[Record]:
        for path, label in self.files:
            image = read_image(path)
            yield Record(
                image=image, source=str(path), label=label, mask=self._mask(path, image.shape[:2])
            )

    def _mask(self, image: Path, shape: tuple[int, ...]) -> np.ndarray:
        """The union of the image's masks as (H, W) uint8 0/1."""
        merged = np.zeros(shape, dtype=bool)
        for path in self.masks[image]:
            data = read_image(path)
            if data.shape[:2] != shape:
                raise DataError(
                    f"mask {path} is {data.shape[1]}x{data.shape[0]} but its image {image} is "
                    f"{shape[1]}x{shape[0]}",
                    "give the mask its image's size (resize it with nearest neighbour, e.g. "
                    "PIL's Image.resize(size, Image.NEAREST)), or remove the pair",
                )
            merged |= _foreground(path, data, self.options.mask_threshold)
        return merged.astype(np.uint8)


def _foreground(path: Path, data: np.ndarray, threshold: float) -> np.ndarray:
    """Pixels at ``threshold`` of the full scale or above (any channel of an RGB mask)."""
    if data.ndim == 3:
        data = data[:, :, :3].max(axis=2)  # alpha is not a mask value
    full = 255 if data.dtype == np.uint8 else 65535
    level = threshold * full
    fg = data >= level
    if not fg.any() and data.max(initial=0) > 0:
        raise DataError(
            f"mask {path} has pixels above 0 but none reaches the threshold "
            f"({level:g} of {full}): a mask saved as 0/1 values?",
            "save masks as 0/255 (e.g. Image.fromarray(mask * 255)), or pass "
            f"--mask-threshold {1 / full:.2g} to count every pixel above 0",
        )
    return fg
