"""Turn one adapter image into the stored form: uint8, (C, H, W), the requested size and channels."""

from __future__ import annotations

import numpy as np
from PIL import Image

from suite.data.ingest.options import IngestOptions


def to_uint8(
    image: np.ndarray,
    intensity: str,
    clip_percentiles: tuple[float, float],
    floor: float | None = None,
) -> np.ndarray:
    """Scale intensities to 0..255.

    uint8 images pass unchanged; "unit" images (already in [0, 1]) are scaled by 255; anything else
    (12/16-bit, float) is clipped at the given percentiles and mapped linearly, the usual CT/MR/CR
    normalisation (e.g. DiffBoost clips at 0.5/99.5). ``floor`` raises the lower bound to at least
    that value (DiffBoost's -256 HU for CT, where the 0.5th percentile is air at -1000 HU).
    """
    if intensity == "unit":
        return np.clip(np.rint(image.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)
    if image.dtype == np.uint8:
        return image
    data = image.astype(np.float32)
    finite = data[np.isfinite(data)]
    if finite.size == 0:
        return np.zeros(image.shape, dtype=np.uint8)
    lo, hi = np.percentile(finite, clip_percentiles)
    if floor is not None:
        lo = max(float(lo), floor)
    if hi <= lo:
        return np.zeros(image.shape, dtype=np.uint8)
    data = np.nan_to_num(data, nan=lo)
    return np.clip(np.rint((data - lo) * (255.0 / (hi - lo))), 0, 255).astype(np.uint8)


def to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """(H, W) or (H, W, C) uint8 -> (H, W, channels): RGB to luma (ITU-R 601-2, as PIL) or gray to RGB."""
    if image.ndim == 2:
        image = image[:, :, None]
    if image.shape[2] == 4:  # RGBA: drop alpha
        image = image[:, :, :3]
    if image.shape[2] == channels:
        return image
    if channels == 1:
        rgb = image.astype(np.float32)
        gray = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
        return np.clip(np.rint(gray), 0, 255).astype(np.uint8)[:, :, None]
    return np.repeat(image[:, :, :1], channels, axis=2)


def _resize_plane(plane: np.ndarray, size: tuple[int, int], resample: int) -> np.ndarray:
    return np.asarray(Image.fromarray(plane).resize(size, resample=resample))


def resize(image: np.ndarray, size: int, aspect: str, *, is_mask: bool = False) -> np.ndarray:
    """Resize (H, W, C) to (size, size, C) with an explicit aspect policy.

    pad: scale the long side to ``size`` and pad the short one with zeros, centred (letterbox);
    crop: scale the short side to ``size`` and centre-crop; stretch: scale each side to ``size``.
    Masks use nearest neighbour so label values stay labels.
    """
    h, w = image.shape[:2]
    if (h, w) == (size, size):
        return image
    resample = Image.Resampling.NEAREST if is_mask else Image.Resampling.BILINEAR
    if aspect == "stretch":
        new_h, new_w = size, size
    else:
        scale = size / max(h, w) if aspect == "pad" else size / min(h, w)
        new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    planes = [
        _resize_plane(image[:, :, c], (new_w, new_h), resample) for c in range(image.shape[2])
    ]
    resized = np.stack(planes, axis=2)
    if aspect == "stretch":
        return resized
    out = np.zeros((size, size, image.shape[2]), dtype=image.dtype)
    if aspect == "pad":
        top, left = (size - new_h) // 2, (size - new_w) // 2
        out[top : top + new_h, left : left + new_w] = resized
        return out
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return resized[top : top + size, left : left + size]


def prepare(
    image: np.ndarray, intensity: str, options: IngestOptions, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """One record's image (and mask) in stored form: (C, H, W) uint8 and (1, H, W) uint8."""
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        raise ValueError(f"image has shape {image.shape}: expected (H, W) or (H, W, 1|3|4)")
    pixels = to_uint8(image, intensity, options.clip_percentiles, options.hu_floor)
    pixels = to_channels(pixels, options.channels)
    out_mask = None
    if mask is not None:
        out_mask = mask.astype(np.uint8)[:, :, None]
    if options.image_size is not None:
        pixels = resize(pixels, options.image_size, options.aspect)
        if out_mask is not None:
            out_mask = resize(out_mask, options.image_size, options.aspect, is_mask=True)
    chw = np.ascontiguousarray(pixels.transpose(2, 0, 1))
    return chw, (
        np.ascontiguousarray(out_mask.transpose(2, 0, 1)) if out_mask is not None else None
    )
