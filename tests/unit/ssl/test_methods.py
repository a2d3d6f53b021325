"""DINO and SimCLR modules, the parameter groups and the schedules of `synmed pretrain`."""

from __future__ import annotations

import math

import pytest
import torch

from suite.models.backbones import BackboneSpec, build_backbone
from suite.ssl.config import DINOConfig, SimCLRConfig
from suite.ssl.dino import DINO
from suite.ssl.method import Progress, cosine
from suite.ssl.registry import METHODS
from suite.ssl.simclr import SimCLR
from suite.ssl.train import param_groups

SPEC = BackboneSpec(arch="vit", image_size=16, patch_size=4, num_layers=1, num_heads=2,
                    hidden_dim=32, mlp_dim=64, in_channels=1)  # fmt: skip
DINO_CFG = DINOConfig(head_hidden_dim=32, head_bottleneck_dim=8, head_output_dim=16,
                      warmup_teacher_temp=0.02, teacher_temp=0.06, warmup_teacher_temp_epochs=3,
                      n_local_views=2, local_crop_size=8)  # fmt: skip


def test_registry_names_every_method() -> None:
    assert dict(METHODS) == {"dino": DINO, "simclr": SimCLR}


def test_cosine_schedule_ends() -> None:
    assert cosine(0.996, 1.0, 0, 100) == pytest.approx(0.996)
    assert cosine(0.996, 1.0, 100, 100) == pytest.approx(1.0)
    assert cosine(0.996, 1.0, 50, 100) == pytest.approx(0.998)
    assert cosine(1.0, 0.0, 500, 100) == pytest.approx(0.0)  # clamped past the end


def test_dino_teacher_starts_as_the_student_and_follows_it_by_ema() -> None:
    torch.manual_seed(0)
    dino = DINO(build_backbone(SPEC), SPEC, DINO_CFG)
    student = dict(dino.backbone.named_parameters())
    for name, p in dino.teacher_backbone.named_parameters():
        assert torch.equal(p, student[name]) and not p.requires_grad
    for (_, s), (_, t) in zip(
        dino.head.state_dict().items(), dino.teacher_head.state_dict().items()
    ):
        assert torch.equal(s, t)
    views = [torch.randn(4, 1, 16, 16), torch.randn(4, 1, 16, 16)] + [torch.randn(4, 1, 8, 8)] * 2
    progress = Progress(step=0, max_steps=10, steps_per_epoch=5)
    loss = dino(views, progress)  # local views go through the ViT too
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    dino.after_backward(progress)  # epoch 0 < freeze_last_layer_epochs=1: last layer frozen
    assert all(p.grad is None for p in dino.head.last_layer.parameters())
    with torch.no_grad():
        for p in dino.backbone.parameters():
            p.add_(1.0)
    before = {n: p.clone() for n, p in dino.teacher_backbone.named_parameters()}
    dino.after_step(progress)
    m = dino.momentum(progress)
    assert m == pytest.approx(0.996)
    for name, p in dino.teacher_backbone.named_parameters():
        torch.testing.assert_close(p, m * before[name] + (1 - m) * student[name])


def test_dino_teacher_temperature_warms_up_linearly_per_epoch() -> None:
    dino = DINO(build_backbone(SPEC), SPEC, DINO_CFG)
    temps = [dino.teacher_temperature(e) for e in range(5)]
    assert temps == pytest.approx([0.02, 0.04, 0.06, 0.06, 0.06])


def test_simclr_loss_is_finite_and_reaches_the_backbone() -> None:
    spec = BackboneSpec(arch="resnet18", image_size=16, in_channels=1, stem="cifar")
    simclr = SimCLR(build_backbone(spec), spec, SimCLRConfig(head_hidden_dim=32, head_output_dim=8))
    x = torch.randn(4, 1, 16, 16)
    loss = simclr([x, x + 0.1 * torch.randn_like(x)], Progress(0, 1, 1))
    loss.backward()
    assert torch.isfinite(loss) and simclr.backbone.conv1.weight.grad is not None
    # identical views of distinct images are easy positives: a lower loss than random pairs
    with torch.no_grad():
        simclr.eval()
        same = simclr([x, x], Progress(0, 1, 1))
        other = simclr([x, torch.randn_like(x)], Progress(0, 1, 1))
    assert same < other
    assert math.isfinite(float(same))


def test_every_weight_matrix_decays_and_no_bias_or_norm_does() -> None:
    dino = DINO(build_backbone(SPEC), SPEC, DINO_CFG)
    decay, no_decay = param_groups(dino)
    assert decay["decays"] and not no_decay["decays"] and no_decay["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decay["params"])
    assert all(p.ndim <= 1 for p in no_decay["params"])
    trainable = [p for p in dino.parameters() if p.requires_grad]
    assert len(decay["params"]) + len(no_decay["params"]) == len(trainable)
    assert len(decay["params"]) > 5  # seed 001 scheduled the decay of one tensor only
