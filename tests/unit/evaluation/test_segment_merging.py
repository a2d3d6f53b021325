"""DiffBoost's random merging masks: patch grid, proportion alpha, labels follow predictions."""

from __future__ import annotations

import pytest
import torch

from suite.evaluation.segment.merging import merge, merge_labels, random_merging_mask


@pytest.mark.parametrize("alpha", [0.2, 0.6, 0.9])
def test_share_of_real_patches_is_alpha(alpha: float) -> None:
    g = torch.Generator().manual_seed(0)
    mask = random_merging_mask(400, 32, 32, alpha=alpha, patch=8, generator=g)
    cells = mask[:, 0, ::8, ::8]  # one pixel per patch: 400 x 16 Bernoulli draws
    # 6400 draws: the standard error is <= 0.00625, so 0.03 is about 5 of them
    assert cells.mean().item() == pytest.approx(alpha, abs=0.03)
    assert mask.mean().item() == pytest.approx(cells.mean().item())


def test_mask_is_constant_on_patches_and_cropped_to_odd_sizes() -> None:
    g = torch.Generator().manual_seed(1)
    mask = random_merging_mask(8, 30, 21, alpha=0.5, patch=8, generator=g)
    assert mask.shape == (8, 1, 30, 21)
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    for top in range(0, 30, 8):
        for left in range(0, 21, 8):
            block = mask[:, :, top : top + 8, left : left + 8]
            assert (block == block[:, :, :1, :1]).all()  # one value per patch


def test_alpha_zero_and_one_take_one_image_entirely() -> None:
    assert random_merging_mask(2, 16, 16, alpha=1.0, patch=4).eq(1).all()
    assert random_merging_mask(2, 16, 16, alpha=0.0, patch=4).eq(0).all()


def test_labels_follow_the_image_each_patch_came_from() -> None:
    g = torch.Generator().manual_seed(2)
    real_img = torch.rand(4, 3, 24, 24) + 10  # > 10: distinguishable from the synthetic < 1
    syn_img = torch.rand(4, 3, 24, 24)
    real_lab = torch.randint(0, 3, (4, 24, 24))
    syn_lab = torch.randint(0, 3, (4, 24, 24))
    m = random_merging_mask(4, 24, 24, alpha=0.5, patch=6, generator=g)
    image = merge(m, real_img, syn_img)
    labels = merge_labels(m[:, 0], real_lab, syn_lab)
    from_real = image[:, 0] > 5
    assert 0 < from_real.float().mean() < 1  # both sources present
    assert torch.equal(labels[from_real], real_lab[from_real])
    assert torch.equal(labels[~from_real], syn_lab[~from_real])
    every_channel = from_real.unsqueeze(1).expand(-1, 3, -1, -1)  # the mask covers all channels
    assert torch.equal(image[every_channel], real_img[every_channel])
    assert torch.equal(image[~every_channel], syn_img[~every_channel])


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="probability"):
        random_merging_mask(1, 8, 8, alpha=1.5, patch=4)
    with pytest.raises(ValueError, match="patch"):
        random_merging_mask(1, 8, 8, alpha=0.5, patch=0)
