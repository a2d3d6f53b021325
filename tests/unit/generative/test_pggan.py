"""PGGAN: the growth schedule, the fade blend, every scale's shapes, equalised LR, minibatch
stddev, the WGAN-GP loss, inactive scales without gradients, sampling and export."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from suite.errors import ConfigError
from suite.generative.base import Conditions, SampleOptions
from suite.generative.configs import PGGANConfig
from suite.generative.export import export_generator, load_generator
from suite.generative.families import build_generator
from suite.generative.gan import gradient_penalty
from suite.generative.pggan import (
    PGGAN,
    EqualizedConv2d,
    EqualizedLinear,
    Phase,
    Schedule,
    fade_blend,
    minibatch_stddev,
    num_scales,
    pixel_norm,
)
from suite.schema import load_config

REPO = Path(__file__).resolve().parents[3]
TINY = REPO / "configs/generator/tiny_pggan.yaml"
GAN = SampleOptions(sampler="gan", steps=1)


def tiny(*overrides: str) -> PGGAN:
    torch.manual_seed(0)
    model = build_generator(load_config(TINY, list(overrides)).model)
    assert isinstance(model, PGGAN)
    return model


def test_the_schedule_gives_each_step_its_scale_and_alpha() -> None:
    # 2 stable steps at 4 px, then per scale 2 fade steps and 2 stable ones; 16 px stays
    schedule = Schedule(scales=3, steps_per_phase=2, steps_per_fade=2)
    got = [(p.scale, p.alpha, p.name) for p in map(schedule.at, range(11))]
    third, two_thirds = 1 / 3, 2 / 3
    assert got == [
        (0, 1.0, "stable-4px"), (0, 1.0, "stable-4px"),
        (1, third, "fade-8px"), (1, two_thirds, "fade-8px"),
        (1, 1.0, "stable-8px"), (1, 1.0, "stable-8px"),
        (2, third, "fade-16px"), (2, two_thirds, "fade-16px"),
        (2, 1.0, "stable-16px"), (2, 1.0, "stable-16px"), (2, 1.0, "stable-16px"),
    ]  # fmt: skip
    assert schedule.total_steps == 10 and schedule.at(10**9) == Phase(2, 1.0)
    # no fade: each scale starts at full weight; one scale: always stable
    jump = Schedule(scales=3, steps_per_phase=3, steps_per_fade=0)
    assert [jump.at(t).scale for t in range(8)] == [0, 0, 0, 1, 1, 1, 2, 2]
    assert {jump.at(t).alpha for t in range(8)} == {1.0}
    assert Schedule(scales=1, steps_per_phase=1, steps_per_fade=5).at(7) == Phase(0, 1.0)
    assert Phase(2, 0.25).as_values() == {"scale": 2, "alpha": 0.25, "resolution": 16}


def test_the_fade_blend_mixes_the_image_with_its_half_resolution_copy() -> None:
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    low = torch.tensor([[2.5, 2.5, 4.5, 4.5], [2.5, 2.5, 4.5, 4.5],
                        [10.5, 10.5, 12.5, 12.5], [10.5, 10.5, 12.5, 12.5]])  # fmt: skip
    assert torch.equal(fade_blend(x, 0.25)[0, 0], 0.25 * x[0, 0] + 0.75 * low)
    assert fade_blend(x, 1.0) is x
    blocky = F.interpolate(torch.rand(2, 1, 2, 2), scale_factor=2)
    assert torch.allclose(fade_blend(blocky, 0.3), blocky)  # nothing to lose at half resolution


def test_every_scale_has_its_shapes_conditional_or_not() -> None:
    for head in ("ac", "projection"):
        model = tiny("model.num_classes=3", f"model.class_head={head}")
        z, y = torch.randn(4, 16), torch.tensor([0, 1, 2, 0])
        for scale in range(3):
            for alpha in (0.5, 1.0):
                image = model.G(z, y, scale, alpha)
                assert image.shape == (4, 1, 4 * 2**scale, 4 * 2**scale)
                critic, logits = model.D(image, y, scale, alpha)
                assert critic.shape == (4,)
                assert (logits.shape == (4, 3)) if head == "ac" else logits is None
    assert [num_scales(s) for s in (4, 8, 16, 24, 64, 1024, 2)] == [1, 2, 3, None, 5, 9, None]


def test_equalised_lr_scales_unit_normal_weights_by_he_constant() -> None:
    torch.manual_seed(0)
    conv = EqualizedConv2d(8, 16, 3, padding=1)
    x = torch.randn(2, 8, 5, 5)
    want = F.conv2d(x, conv.weight * math.sqrt(2 / (8 * 9)), conv.bias, padding=1)
    assert torch.allclose(conv(x), want) and conv.scale == pytest.approx(1 / 6)
    big = EqualizedLinear(256, 512, gain=1.0)
    assert big.scale == 1 / 16 and abs(float(big.weight.detach().std()) - 1) < 0.01
    assert torch.equal(big.bias, torch.zeros(512))
    # equalised: a unit-variance input keeps about unit variance through a gain-1 layer
    assert abs(float(big(torch.randn(1024, 256)).std()) - 1) < 0.05


def test_minibatch_stddev_appends_the_group_mean_std() -> None:
    x = torch.tensor([1.0, 3.0, 0.0, 4.0]).reshape(4, 1, 1, 1).expand(4, 1, 2, 2).contiguous()
    out = minibatch_stddev(x, group_size=2)
    assert out.shape == (4, 2, 2, 2) and torch.equal(out[:, :1], x)
    # groups of consecutive rows: {1, 3} has std 1, {0, 4} std 2 (population std, +1e-8)
    assert torch.allclose(out[:, 1, 0, 0], torch.tensor([1.0, 1.0, 2.0, 2.0]))
    three = minibatch_stddev(torch.tensor([0.0, 1.0, 2.0]).reshape(3, 1, 1, 1), group_size=2)
    assert torch.allclose(three[:, 1].flatten(), torch.full((3,), math.sqrt(2 / 3)))  # one group


def test_pixel_norm_gives_every_pixel_unit_mean_square() -> None:
    y = pixel_norm(torch.randn(2, 8, 3, 3) * 5)
    assert torch.allclose(y.pow(2).mean(dim=1), torch.ones(2, 3, 3), atol=1e-5)


def test_the_critic_loss_and_its_gradient_penalty_are_finite_and_reach_d() -> None:
    model = tiny()
    batch = {"image": torch.rand(4, 1, 16, 16)}
    for phase in (Phase(0, 1.0), Phase(1, 0.5), Phase(2, 1.0)):
        model.phase = phase
        real = model.real_images(batch)
        assert real.shape[-1] == phase.resolution
        fake = model.generate(torch.randn(4, 16), None).detach()
        gp = gradient_penalty(lambda x: model.discriminate(x, None), real, fake, 10.0)
        assert gp.ndim == 0 and torch.isfinite(gp) and gp >= 0
        gp.backward()
        assert model.D.from_rgb[phase.scale].weight.grad.abs().sum() > 0
        model.zero_grad()
        for objective in ("discriminator", "generator"):
            loss = model(batch, objective)
            assert loss.ndim == 0 and torch.isfinite(loss)
    # the GP is part of the critic's loss: without it the loss changes
    model.phase = Phase(2, 1.0)
    torch.manual_seed(1)
    with_gp = model(batch, "discriminator")
    model.config.gp_lambda = 0.0
    torch.manual_seed(1)
    assert not torch.equal(with_gp, model(batch, "discriminator"))


def test_layers_above_the_current_scale_get_no_gradient() -> None:
    model = tiny()
    batch = {"image": torch.rand(4, 1, 16, 16)}
    model.phase = Phase(1, 0.5)  # fading in 8 px: the 4 px to_rgb/from_rgb still take part
    model(batch, "generator").backward()
    g_grads = {n for n, p in model.G.named_parameters() if p.grad is not None}
    assert "to_rgb.0.weight" in g_grads and "to_rgb.1.weight" in g_grads
    assert not any(n.startswith(("blocks.2.", "to_rgb.2.")) for n in g_grads)
    model.zero_grad(set_to_none=True)
    model.phase = Phase(1, 1.0)
    model(batch, "discriminator").backward()
    d_grads = {n for n, p in model.D.named_parameters() if p.grad is not None}
    assert "from_rgb.1.weight" in d_grads and "from_rgb.0.weight" not in d_grads
    assert all(p.grad is None for p in model.G.parameters())  # D's step leaves G alone


def test_class_conditioning_adds_the_ac_loss() -> None:
    model = tiny("model.num_classes=3")
    batch = {"image": torch.rand(4, 1, 16, 16), "label": torch.tensor([0, 1, 2, 0])}
    torch.manual_seed(3)
    with_ac = model(batch, "generator")
    model.config.ac_weight = 0.0
    torch.manual_seed(3)
    assert with_ac > model(batch, "generator")  # cross-entropy is positive


def test_sampling_is_per_index_at_the_target_size_in_eval_mode() -> None:
    model = tiny().train()
    model.phase = Phase(0, 1.0)  # training at 4 px: sampling still gives 16 px
    batch = model.sample([3, 5, 9], 7, None, GAN)
    alone = model.sample([5], 7, None, GAN)
    assert batch.images.shape == (3, 1, 16, 16) and batch.images.dtype == np.uint8
    assert np.array_equal(batch.images[1], alone.images[0]) and model.training
    assert not np.array_equal(batch.images[0], model.sample([3], 8, None, GAN).images[0])
    # previews show the scale being trained, enlarged: 4 px blocks of 4x4 equal pixels
    preview = model.sample_preview(2, steps=1, seed=0)
    assert preview.shape == (2, 1, 16, 16)
    assert torch.equal(preview, F.interpolate(preview[:, :, ::4, ::4], scale_factor=4))
    conditional = tiny("model.num_classes=3")
    out = conditional.sample([0, 1], 0, Conditions(labels=np.array([2, 0])), GAN)
    assert out.labels.tolist() == [2, 0]
    with pytest.raises(ConfigError, match="class-conditional"):
        conditional.sample([0], 0, None, GAN)


def test_export_holds_g_and_reloads_to_the_same_samples(tmp_path: Path) -> None:
    model = tiny("model.num_classes=2").eval()
    export_generator(model, tmp_path / "export", {}, ["a", "b"])
    again, _ = load_generator(tmp_path)
    assert isinstance(again, PGGAN) and not again.training
    cond = Conditions(labels=np.array([0, 1, 1]))
    assert np.array_equal(
        model.sample([0, 1, 2], 4, cond, GAN).images, again.sample([0, 1, 2], 4, cond, GAN).images
    )
    assert set(model.ema_modules()) == {"G"} and set(model.trainable_modules()) == {"G", "D"}
    assert model.find_unused_parameters and not model.ema_warmup


def test_sizes_and_depths_that_cannot_grow_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="model.image_size=24") as err:
        PGGAN(PGGANConfig(image_size=24))
    assert "4 * 2**k" in str(err.value)
    with pytest.raises(ConfigError, match="model.depths has 2 entries but 16 px has 3 scales"):
        PGGAN(PGGANConfig(image_size=16, depths=(8, 8)))
    assert PGGAN(PGGANConfig(image_size=8, latent_dim=8)).G.depths == (512, 512)  # the zoo's
