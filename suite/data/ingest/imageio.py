"""Reading ordinary image files (PNG, JPEG, TIFF, BMP) with one clear error for a bad one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from suite.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def read_image(path: Path) -> np.ndarray:
    """Decode a whole image file to an (H, W) or (H, W, C) array, keeping 16-bit depth.

    Raises:
        DataError: naming the file when it is missing, truncated or not an image.
    """
    try:
        with Image.open(path) as img:
            img.load()  # decode everything now: PIL is lazy and a truncated file fails only here
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                return np.asarray(img, dtype=np.int32).astype(
                    np.uint16 if img.mode != "I" else np.int32
                )
            if img.mode not in ("L", "RGB", "RGBA", "LA"):
                img = img.convert("RGB")
            if img.mode == "LA":
                img = img.convert("L")
            return np.asarray(img)
    except FileNotFoundError:
        raise DataError(
            f"image file {path} does not exist", "fix the path or the list that names it"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DataError(
            f"{path} is not a readable image ({type(err).__name__}: {err})",
            "the file is corrupt or truncated: replace it with a good copy or remove it from the source",
        ) from None


def list_images(folder: Path) -> list[Path]:
    """Image files below ``folder``, recursively, in a stable (sorted) order; hidden files skipped."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )
