"""Intensity scaling, channels and aspect policies."""

from __future__ import annotations

import numpy as np

from suite.data.ingest.options import IngestOptions
from suite.data.ingest.preprocess import prepare, resize, to_channels, to_uint8


def test_uint8_untouched_and_unit_scaled() -> None:
    img = np.arange(256, dtype=np.uint8).reshape(16, 16)
    np.testing.assert_array_equal(to_uint8(img, "raw", (0.5, 99.5)), img)
    assert to_uint8(np.array([[0.0, 0.5, 1.0]]), "unit", (0, 100)).tolist() == [[0, 128, 255]]


def test_percentile_clipping_of_16_bit() -> None:
    img = np.linspace(0, 4095, 1000).astype(np.uint16).reshape(40, 25)
    img[0, 0] = 65535  # one hot pixel must not squash the rest
    out = to_uint8(img, "raw", (0.5, 99.5))
    assert out.dtype == np.uint8 and out.min() == 0 and out.max() == 255
    assert 120 < out[20, 12] < 135


def test_channels() -> None:
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[..., 1] = 200
    assert to_channels(rgb, 1)[0, 0, 0] == round(200 * 0.587)
    assert to_channels(np.full((2, 2), 7, np.uint8), 3).shape == (2, 2, 3)


def test_aspect_policies() -> None:
    img = np.full((10, 20, 1), 255, np.uint8)
    pad = resize(img, 10, "pad")
    assert pad.shape == (10, 10, 1) and pad[0, 5, 0] == 0 and pad[5, 5, 0] == 255  # letterbox bars
    crop = resize(img, 10, "crop")
    assert crop.shape == (10, 10, 1) and (crop == 255).all()
    assert resize(img, 10, "stretch").shape == (10, 10, 1)


def test_masks_stay_labels() -> None:
    image = np.zeros((9, 9), np.float32)
    mask = np.zeros((9, 9), np.uint8)
    mask[3:6, 3:6] = 2
    chw, m = prepare(image, "raw", IngestOptions(image_size=20), mask)
    assert chw.shape == (1, 20, 20) and m is not None and m.shape == (1, 20, 20)
    assert set(np.unique(m).tolist()) == {0, 2}


def test_floor_raises_the_lower_clip_bound() -> None:
    ct = np.full((10, 10), -1000.0, np.float32)  # air
    ct[:, 5:] = np.linspace(0, 400, 50).reshape(10, 5)  # tissue
    lo, hi = -256.0, float(np.percentile(ct, 99.5))
    out = to_uint8(ct, "raw", (0.5, 99.5), floor=-256)
    np.testing.assert_array_equal(
        out, np.clip(np.rint((ct - lo) * (255.0 / (hi - lo))), 0, 255).astype(np.uint8)
    )
    assert out[0, 0] == 0 and out[0, 5] == round(256 * 255 / (hi + 256))
    # above the floor the percentile stays: the floor only lifts a bound below it
    np.testing.assert_array_equal(
        to_uint8(ct[:, 5:], "raw", (0, 100), floor=-256), to_uint8(ct[:, 5:], "raw", (0, 100))
    )
