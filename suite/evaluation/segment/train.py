"""One seed of a segmentation run: build the network, fit it with MONAI's Dice+CE and AdamW, keep the epoch
with the best validation Dice, predict a split.

Model selection reads the validation split only. DiffBoost (seed 002) monitored ``quick_dice`` on the
fold's *test* files and then reported on those same files; here the report split is never seen
before the final prediction.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from suite.evaluation.segment.augment import BaselineAugment
from suite.evaluation.segment.config import SegmentEvalConfig, SegmentModelConfig
from suite.evaluation.segment.data import SegmentSets, Split, to_batch, training_set
from suite.evaluation.segment.losses import dice_ce_loss
from suite.evaluation.segment.merging import merge, merge_labels, random_merging_mask
from suite.evaluation.segment.metrics import quick_dice
from suite.evaluation.segment.monai_nets import monai_network
from suite.evaluation.segment.patches import Window, crop, crop_corner, infer
from suite.evaluation.segment.resnet_unet import ResNetUNet, resnet_unet
from suite.evaluation.segment.unet import UNet

# The conv and MONAI U-Nets see pixels scaled to [-1, 1] (DiffBoost's preprocessing scales to [-1, 1]).
CONV_MEAN, CONV_STD = 0.5, 0.5


@dataclass(slots=True)
class Model:
    """A network and how to feed it."""

    net: nn.Module
    mean: tuple[float, ...]
    std: tuple[float, ...]
    description: dict[str, Any]


def build_model(cfg: SegmentModelConfig, sets: SegmentSets, patch_size: int | None = None) -> Model:
    """The configured U-Net for this data, or for ``patch_size`` patches of it (the caller seeds
    torch first)."""
    channels, height, width = sets.image_shape
    if patch_size is not None:
        height = width = patch_size
    if cfg.encoder == "conv":
        net: nn.Module = UNet(channels, sets.num_classes, cfg.channels)
        mean, std = (CONV_MEAN,) * channels, (CONV_STD,) * channels
        description = {"encoder": "conv", "channels": list(cfg.channels), "init": "random"}
    elif cfg.encoder in ("monai_unet", "monai_attention_unet"):
        net = monai_network(
            cfg.encoder, channels, sets.num_classes, list(cfg.channels), (height, width)
        )
        mean, std = (CONV_MEAN,) * channels, (CONV_STD,) * channels
        description = {"encoder": cfg.encoder, "network": f"monai.networks.nets.{type(net).__name__}",
                       "channels": list(cfg.channels), "init": "random"}  # fmt: skip
    else:
        net = resnet_unet(
            in_channels=channels,
            image_size=height,
            num_classes=sets.num_classes,
            arch=cfg.arch,
            stem=cfg.stem,
            backbone=cfg.backbone,
            decoder_channels=cfg.decoder_channels,
        )
        assert isinstance(net, ResNetUNet)
        mean, std = net.spec.mean, net.spec.std
        description = {
            "encoder": net.spec.arch,
            "stem": net.spec.stem,
            "init": f"ssl:{cfg.backbone}" if cfg.backbone is not None else "random",
            "frozen": cfg.freeze_encoder,
        }
    return Model(net=net, mean=tuple(mean), std=tuple(std), description=description)


def _collate(samples: list[dict]) -> list[dict]:
    return samples  # to_batch normalises with the model's mean/std


def inference_window(cfg: SegmentEvalConfig) -> Window | None:
    """Sliding-window inference when training on patches, else whole images."""
    tc = cfg.train
    return None if tc.patch_size is None else Window(tc.patch_size, tc.window_overlap)


@torch.no_grad()
def predict(
    model: Model, ds: Split, batch_size: int, window: Window | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Argmax label maps and truths of every row of ``ds``: two ``(N, H, W)`` uint8 arrays."""
    model.net.eval()
    preds, truths = [], []
    for samples in DataLoader(ds, batch_size=batch_size, collate_fn=_collate):
        images, masks = to_batch(samples, model.mean, model.std)
        preds.append(infer(model.net, images, window).argmax(dim=1).to(torch.uint8).numpy())
        truths.append(masks.to(torch.uint8).numpy())
    return np.concatenate(preds), np.concatenate(truths)


def validation_dice(
    model: Model, ds: Split, classes: list[int], batch_size: int, window: Window | None = None
) -> float:
    """Mean over validation images of the mean foreground Dice (seed 002's ``quick_dice``)."""
    pred, truth = predict(model, ds, batch_size, window)
    return float(np.mean([quick_dice(p, t, classes) for p, t in zip(pred, truth)]))


def own_partners(
    versions: dict[int, np.ndarray], indices: list[int], generator: torch.Generator
) -> list[int]:
    """For each real row, one of its own synthetic versions, uniformly (seed 002's partner)."""
    draws = torch.rand(len(indices), generator=generator).tolist()
    picks = []
    for index, u in zip(indices, draws):
        choices = versions[index]
        picks.append(int(choices[min(int(u * len(choices)), len(choices) - 1)]))
    return picks


@dataclass(slots=True)
class FitResult:
    best_epoch: int
    best_val_dice: float
    history: list[dict[str, float]] = field(default_factory=list)


def fit(model: Model, sets: SegmentSets, cfg: SegmentEvalConfig, seed: int) -> FitResult:
    """Train for ``train.epochs`` epochs; leave ``model.net`` at the best validation epoch."""
    tc = cfg.train
    net = model.net
    if cfg.model.freeze_encoder:  # check_config allows it for the ResNet encoder only
        for p in net.encoder_parameters():  # type: ignore[operator]
            p.requires_grad_(False)
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=tc.lr, weight_decay=tc.weight_decay)
    loss_fn = dice_ce_loss(lambda_dice=tc.lambda_dice, lambda_ce=tc.lambda_ce)
    augment = BaselineAugment(list(tc.augment), tc.augment_prob, seed)
    g = torch.Generator().manual_seed(seed)
    data: Dataset = training_set(sets, tc, seed)
    # shuffle=True: the seed's loader had none, so every epoch saw the same order
    loader = DataLoader(
        data, batch_size=tc.batch_size, shuffle=True, generator=g, collate_fn=_collate
    )
    result = FitResult(best_epoch=-1, best_val_dice=-1.0)
    best_state: dict[str, torch.Tensor] | None = None
    for epoch in range(tc.epochs):
        net.train()
        if cfg.model.freeze_encoder:
            net.encoder.eval()  # type: ignore[union-attr]  # frozen BN statistics too
        losses = []
        for samples in loader:
            samples = [augment(s, epoch) for s in samples]
            corners = []
            if tc.patch_size is not None:
                shape = sets.image_shape[1:]
                corners = [
                    crop_corner(seed, epoch, s["index"], shape, tc.patch_size) for s in samples
                ]
                samples = [crop(s, c, tc.patch_size) for s, c in zip(samples, corners)]
            images, masks = to_batch(samples, model.mean, model.std)
            logits = net(images)
            if tc.training_data == "merging":
                assert sets.synthetic is not None
                # one synthetic partner per real image, drawn with this seed's generator
                if sets.partners is not None:
                    indices = [int(s["index"]) for s in samples]
                    partners = own_partners(sets.partners, indices, g)
                else:
                    partners = torch.randint(
                        len(sets.synthetic), (len(samples),), generator=g
                    ).tolist()
                syn_samples = sets.synthetic.__getitems__(partners)
                if corners:  # the partner is cut where its real row was
                    syn_samples = [crop(s, c, tc.patch_size) for s, c in zip(syn_samples, corners)]
                syn_images, syn_masks = to_batch(syn_samples, model.mean, model.std)
                height, width = images.shape[-2:]
                m = random_merging_mask(
                    len(samples), height, width, alpha=tc.alpha, patch=tc.merge_patch, generator=g
                )
                logits = merge(m, logits, net(syn_images))
                masks = merge_labels(m[:, 0], masks, syn_masks)
            loss = loss_fn(logits, masks[:, None])  # MONAI takes (B, 1, H, W) class ids
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        val = validation_dice(
            model, sets.val, sets.foreground, tc.batch_size, inference_window(cfg)
        )
        result.history.append({"epoch": epoch, "loss": float(np.mean(losses)), "val_dice": val})
        if val > result.best_val_dice:
            result.best_epoch, result.best_val_dice = epoch, val
            best_state = copy.deepcopy(net.state_dict())
    assert best_state is not None
    net.load_state_dict(best_state)
    return result
