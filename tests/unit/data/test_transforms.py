"""Seeded augmentation: off by default, a function of (seed, epoch, index) when on."""

from __future__ import annotations

import torch

from suite.data.transforms import Compose, SeededAugment, to_float


def sample(index: int) -> dict:
    g = torch.Generator().manual_seed(index)
    return {
        "image": torch.randint(0, 256, (1, 12, 12), generator=g, dtype=torch.uint8),
        "index": index,
    }


def test_off_by_default_is_identity() -> None:
    s = sample(3)
    assert SeededAugment(seed=0)(s)["image"] is s["image"]


def test_same_seed_epoch_index_same_result_regardless_of_global_rng() -> None:
    aug = SeededAugment(seed=5, hflip=True, degrees=10, translate=0.1)
    torch.manual_seed(1)
    a = aug(sample(7))["image"]
    torch.manual_seed(999)
    b = aug(sample(7))["image"]
    assert torch.equal(a, b)
    aug.epoch = 1
    outputs = {aug(sample(7))["image"].sum().item() for _ in range(3)}
    assert len(outputs) == 1
    changed = [not torch.equal(aug(sample(i))["image"], sample(i)["image"]) for i in range(20)]
    assert any(changed)


def test_compose_and_to_float() -> None:
    out = Compose([SeededAugment(seed=0), to_float])(sample(1))
    assert (
        out["image"].dtype == torch.float32 and out["image"].min() >= 0 and out["image"].max() <= 1
    )


def test_zoom_and_intensity_jitter_draw_only_when_on() -> None:
    s = sample(4)
    geometric = SeededAugment(seed=2, hflip=True, degrees=10)
    # the new options draw after the flip and the angle: with them off, the result is unchanged
    same = SeededAugment(seed=2, hflip=True, degrees=10, scale=0.0, brightness=0.0, contrast=0.0)
    assert torch.equal(geometric(s)["image"], same(s)["image"])
    zoomed = SeededAugment(seed=2, scale=0.3)(s)["image"]
    assert zoomed.shape == s["image"].shape and not torch.equal(zoomed, s["image"])
    flat = {"image": torch.full((1, 8, 8), 100, dtype=torch.uint8), "index": 0}
    values = {int(SeededAugment(seed=k, brightness=0.2)(flat)["image"][0, 0, 0]) for k in range(20)}
    assert len(values) > 1 and min(values) >= 80 and max(values) <= 120
    # contrast about the mean leaves a flat image flat
    assert torch.equal(SeededAugment(seed=1, contrast=0.5)(flat)["image"], flat["image"])
