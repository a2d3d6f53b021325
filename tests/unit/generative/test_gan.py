"""The GAN families (dcgan, acgan) and their shared pieces (suite/generative/gan.py): losses,
per-row latents, eval-mode sampling, per-class generators, export, the discriminator-wins rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from suite.errors import ConfigError, DataError
from suite.generative.base import Conditions, SampleOptions
from suite.generative.export import export_generator, load_generator
from suite.generative.families import build_generator
from suite.generative.gan import (
    D_WINS,
    WEIGHTS,
    bce_d_loss,
    bce_g_loss,
    check_discriminator_wins,
    gradient_penalty,
    wgan_gp_d_loss,
)
from suite.schema import load_config
from suite.train.state import TrainState
from suite.train.step import TrainingError

REPO = Path(__file__).resolve().parents[3]
DCGAN = REPO / "configs/generator/tiny_dcgan.yaml"
ACGAN = REPO / "configs/generator/tiny_acgan.yaml"
GAN = SampleOptions(sampler="gan", steps=1)
MODES = {
    "unconditional": (DCGAN, []),
    "per_class": (DCGAN, ["model.mode=per_class", "model.num_classes=3"]),
    "conditional": (DCGAN, ["model.mode=conditional", "model.num_classes=3"]),
    "seed": (DCGAN, ["model.architecture=seed", "model.seed_base=1", "model.image_size=12"]),
    "acgan": (ACGAN, ["model.num_classes=3"]),
}


def build(name: str, *extra: str):
    path, overrides = MODES[name]
    torch.manual_seed(0)
    return build_generator(load_config(path, [*overrides, *extra]).model)


def labels_for(model, n: int) -> np.ndarray | None:
    return np.arange(n) % model.num_classes if model.num_classes else None


def batch_for(model, n: int = 6) -> dict[str, torch.Tensor]:
    size = model.config.image_size
    return {"image": torch.rand(n, 1, size, size), "label": torch.arange(n) % 3}


def test_bce_losses_are_sigmoid_then_bce_and_non_saturating() -> None:
    real, fake = torch.randn(5), torch.randn(5)
    bce = nn.BCELoss()
    want = (bce(real.sigmoid(), torch.ones(5)) + bce(fake.sigmoid(), torch.zeros(5))) / 2
    assert torch.allclose(bce_d_loss(real, fake), want)
    assert torch.allclose(bce_g_loss(fake), -fake.sigmoid().log().mean())
    assert torch.isfinite(bce_d_loss(torch.tensor([80.0]), torch.tensor([-80.0])))


def test_gradient_penalty_is_zero_for_a_unit_gradient_critic() -> None:
    real, fake = torch.randn(4, 1, 2, 2), torch.randn(4, 1, 2, 2)
    unit = torch.full((4,), 0.5)  # |w| = 1 over the 4 pixels

    def critic(w: torch.Tensor):
        return lambda x: x.flatten(1) @ w

    assert gradient_penalty(critic(unit), real, fake).item() == pytest.approx(0.0, abs=1e-6)
    assert gradient_penalty(critic(2 * unit), real, fake, 10.0).item() == pytest.approx(10.0)
    scores_r, scores_f = critic(unit)(real), critic(unit)(fake)
    loss = wgan_gp_d_loss(critic(unit), real, fake, scores_r, scores_f, drift=1e-3)
    want = scores_f.mean() - scores_r.mean() + 1e-3 * (scores_r**2).mean()
    assert loss.item() == pytest.approx(want.item(), abs=1e-5)


@pytest.mark.parametrize("name", list(MODES))
def test_both_objectives_are_finite_and_train_their_own_network(name: str) -> None:
    model = build(name)
    for objective, trained, other in (
        ("discriminator", model.D, model.G),
        ("generator", model.G, model.D),
    ):
        model.zero_grad(set_to_none=True)
        loss = model(batch_for(model), objective)
        assert loss.ndim == 0 and torch.isfinite(loss)
        loss.backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trained.parameters())
        if objective == "discriminator":  # G ran without a graph
            assert all(p.grad is None for p in other.parameters())


@pytest.mark.parametrize("name", list(MODES))
def test_sampling_is_per_row_in_eval_mode_and_leaves_the_global_rng(name: str) -> None:
    model = build(name).train()
    model.bind_data(["a", "b", "c"], [0, 1, 2])
    labels = labels_for(model, 6)
    cond = Conditions(labels=labels) if labels is not None else None
    torch.manual_seed(1)
    before = torch.get_rng_state()
    whole = model.sample(range(6), 3, cond, GAN)
    assert torch.equal(torch.get_rng_state(), before) and model.training
    tail = Conditions(labels=labels[4:]) if labels is not None else None
    part = model.sample([4, 5], 3, tail, GAN)
    size = model.config.image_size
    assert whole.images.shape == (6, 1, size, size) and whole.images.dtype == np.uint8
    assert np.array_equal(whole.images[4:], part.images)  # batch composition does not matter
    assert not np.array_equal(whole.images, model.sample(range(6), 4, cond, GAN).images)
    again = model.sample(range(6), 3, cond, SampleOptions(sampler="gan", steps=1, attempt=1))
    assert not np.array_equal(whole.images, again.images)  # attempt 1 has its own noise
    if labels is not None:
        assert np.array_equal(whole.labels, labels)


def test_per_class_rows_come_from_their_class_generator() -> None:
    model = build("per_class").eval()
    model.bind_data(["a", "b", "c"], [0, 1, 2])
    cond = Conditions(labels=np.array([0, 1, 2, 1]))
    before = model.sample(range(4), 0, cond, GAN).images
    with torch.no_grad():
        for p in model.G.nets["1"].parameters():
            p.add_(0.5)
    after = model.sample(range(4), 0, cond, GAN).images
    assert np.array_equal(before[[0, 2]], after[[0, 2]])
    assert not np.array_equal(before[[1, 3]], after[[1, 3]])


def test_per_class_with_a_class_filter_refuses_its_untrained_classes(tmp_path: Path) -> None:
    model = build("per_class")
    model.bind_data(["cat", "dog", "eel"], [1])  # data.classes=[dog], one array task
    assert model.trained_classes() == [1]
    preview = model.sample_preview(3, steps=1, seed=0)
    assert preview.shape == (3, 1, 16, 16)
    export_generator(model.eval(), tmp_path / "export", {}, ["cat", "dog", "eel"])
    again, _ = load_generator(tmp_path)
    assert again.trained_classes() == [1]  # the export carries which pairs trained
    again.sample(range(2), 0, Conditions(labels=np.array([1, 1])), GAN)
    with pytest.raises(DataError, match="no trained generator for class\\(es\\) cat, eel") as err:
        again.sample(range(3), 0, Conditions(labels=np.array([0, 1, 2])), GAN)
    assert "--class-weights 0,1,0" in err.value.fix


@pytest.mark.parametrize("name", ["per_class", "acgan"])
def test_export_holds_the_generator_only_and_reloads_to_the_same_images(
    name: str, tmp_path: Path
) -> None:
    model = build(name).eval()
    model.bind_data(["a", "b", "c"], [0, 1, 2])
    export_generator(model, tmp_path / "export", {}, ["a", "b", "c"])
    files = sorted(p.name for p in (tmp_path / "export").iterdir())
    assert WEIGHTS in files and not any("discriminator" in f for f in files)
    again, _ = load_generator(tmp_path)
    cond = Conditions(labels=np.array([2, 0, 1]))
    assert np.array_equal(
        model.sample(range(3), 9, cond, GAN).images, again.sample(range(3), 9, cond, GAN).images
    )


def test_conditional_gans_need_labels_and_the_gan_sampler() -> None:
    model = build("acgan")
    with pytest.raises(ConfigError, match="given no labels") as err:
        model.sample(range(2), 0, None, GAN)
    assert "--per-class" in err.value.fix
    with pytest.raises(ConfigError, match="do not fit"):
        model.sample(range(2), 0, Conditions(labels=np.array([0, 3])), GAN)
    with pytest.raises(ConfigError, match="not a GAN's") as err:
        model.check_sampling(SampleOptions(sampler="ddpm", steps=10))
    assert "--sampler gan" in err.value.fix


def test_acgan_aux_head_is_logits_into_cross_entropy() -> None:
    model = build("acgan")
    assert not any(isinstance(m, nn.Softmax | nn.Sigmoid) for m in model.D.modules())
    images = torch.rand(4, 1, 16, 16) * 2 - 1
    adv, aux = model.D(images)
    assert adv.shape == (4,) and aux.shape == (4, 3)
    assert not torch.allclose(aux.exp().sum(1), torch.ones(4))  # raw logits, not probabilities
    assert model.step_order == ("generator", "discriminator")  # PyTorch-GAN: G, then D


def test_bn_eps_0_8_reproduces_the_reference_batchnorm() -> None:
    def eps(model) -> list[float]:
        return [m.eps for m in model.modules() if isinstance(m, nn.BatchNorm2d)]

    default, faithful = eps(build("acgan")), eps(build("acgan", "model.bn_eps_0_8=true"))
    assert set(default) == {1e-5}
    # G's first BatchNorm2d(128) keeps the default eps; every BatchNorm2d(C, 0.8) gets 0.8
    assert faithful[0] == 1e-5 and set(faithful[1:]) == {0.8} and len(faithful) == 6
    assert all(m.momentum == 0.1 for m in build("acgan", "model.bn_eps_0_8=true").modules()
               if isinstance(m, nn.BatchNorm2d))  # fmt: skip


def test_dcgan_networks_follow_pytorch_examples() -> None:
    model = build_generator(load_config(DCGAN, ["model.image_size=64", "model.ngf=64",
                                                "model.ndf=64", "model.latent_dim=100"]).model)  # fmt: skip
    convs = [m for m in model.G.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [c.out_channels for c in convs] == [512, 256, 128, 64, 1]  # ngf*8 at 4 px, as there
    dconvs = [m for m in model.D.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in dconvs] == [64, 128, 256, 512, 1]
    weights = torch.cat([c.weight.flatten() for c in convs])
    assert abs(weights.std().item() - 0.02) < 0.002  # N(0, 0.02) init
    assert model.generate(torch.randn(2, 100, 1, 1), None).shape == (2, 1, 64, 64)
    seed = build_generator(load_config(REPO / "configs/papers/medcls/dcgan_per_class.yaml").model)
    assert (
        isinstance(seed.G.nets["0"][0], nn.Linear)
        and seed.G.nets["0"][0].out_features == 1024 * 256
    )


def test_gan_config_errors_name_the_setting() -> None:
    with pytest.raises(ConfigError, match="model.image_size=24") as err:
        build("unconditional", "model.image_size=24")
    assert "architecture: seed" in err.value.fix
    with pytest.raises(ConfigError, match="model.mode=per_class needs classes"):
        build("unconditional", "model.mode=per_class")
    with pytest.raises(ConfigError, match="unconditional with model.num_classes=3"):
        build("unconditional", "model.num_classes=3")
    with pytest.raises(ConfigError, match="model.image_size=24"):
        build("acgan", "model.image_size=24")
    with pytest.raises(ConfigError, match="ACGAN is class-conditional"):
        build("acgan", "model.num_classes=0")


def test_discriminator_wins_stops_after_patience_and_names_the_fix() -> None:
    cfg = load_config(DCGAN, ["model.d_wins_patience=3"]).model
    state = TrainState()
    won = {"d_real": 0.999, "d_fake": 0.001, "generator": 7.0, "g_adv": 7.0}
    close = {"d_real": 0.7, "d_fake": 0.3, "generator": 1.0, "g_adv": 1.0}
    args = {"command": "synmed train generator runs/x/config.yaml", "last_checkpoint": None}
    for step, losses in enumerate([won, won, close, won, won], start=1):
        check_discriminator_wins(losses, state, cfg, step=step, **args)
    assert state.values[D_WINS] == 2  # the non-win at step 3 reset the count
    last = Path("runs/x/checkpoints/step-00000005")
    with pytest.raises(
        TrainingError, match="won outright for 3 consecutive steps by step 6"
    ) as err:
        check_discriminator_wins(
            won, state, cfg, step=6, command=args["command"], last_checkpoint=last
        )
    assert f"last good checkpoint: {last}" in err.value.what
    assert (
        "synmed train generator runs/x/config.yaml model.d_lr_factor=0.25 --restart"
        in err.value.fix
    )
    assert "model.d_wins_patience" in err.value.fix
    off = load_config(DCGAN, ["model.d_wins_patience=0"]).model
    for step in range(10):
        check_discriminator_wins(won, TrainState(), off, step=step, **args)


def test_d_lr_factor_scales_only_the_discriminator() -> None:
    model = build("unconditional", "model.d_lr_factor=0.5")
    specs = model.configure_optimizers(load_config(DCGAN).train)
    assert specs["D"].optimizer.param_groups[0]["lr"] == pytest.approx(1e-4)
    assert specs["G"].optimizer.param_groups[0]["lr"] == pytest.approx(2e-4)
    assert specs["G"].optimizer.param_groups[0]["betas"] == (0.5, 0.999)
    assert set(model.ema_modules()) == {"G"} and set(model.trainable_modules()) == {"G", "D"}


@pytest.mark.parametrize("name", ["unconditional", "conditional"])
def test_a_dcgan_step_runs_g_once_per_micro_batch_and_feeds_d_its_fakes(name: str) -> None:
    from accelerate import Accelerator

    from suite.train.step import StepContext

    model = build(name)
    cfg = load_config(MODES[name][0], MODES[name][1])
    optimizers = {k: s.optimizer for k, s in model.configure_optimizers(cfg.train).items()}
    g_outputs, d_inputs = [], []
    model.G.register_forward_hook(lambda m, args, out: g_outputs.append(out.detach().clone()))
    model.D.register_forward_hook(lambda m, args, out: d_inputs.append(args[0].detach().clone()))
    batches = [batch_for(model), batch_for(model)]
    ctx = StepContext(Accelerator(cpu=True), model, batches, optimizers, {}, 1, None)
    losses = model.train_step(ctx)
    assert all(torch.isfinite(v) for v in losses.values())
    assert len(g_outputs) == 2  # pytorch/examples: one G forward a step (here per micro-batch)
    # D sees real, fake per micro-batch, then G's objective the same fakes, in the same order
    assert len(d_inputs) == 6
    for i in range(2):
        assert torch.equal(d_inputs[2 * i + 1], g_outputs[i])
        assert torch.equal(d_inputs[4 + i], g_outputs[i])
    assert model._fakes == [] and not model._keep_fakes  # no graph outlives the step
    model.zero_grad(set_to_none=True)
    model(batches[0], "generator").backward()  # outside a step: fresh fakes, G still trains
    assert len(g_outputs) == 3
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.G.parameters())
