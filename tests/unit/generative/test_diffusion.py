"""The shared diffusion sampler loop: noise per index, every sampler on both DDPM families, the
bytes the suite produced before the generator interface changed, and the library's own loop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from suite.errors import ConfigError
from suite.generative.base import Conditions, SampleOptions
from suite.generative.configs import DiffusersDDPMConfig, LucidrainsDDPMConfig
from suite.generative.diffusion import DIFFUSION_SAMPLERS
from suite.generative.families import build_generator
from suite.schema import load_config
from suite.train.loop import weights_digest

REPO = Path(__file__).resolve().parents[3]
TINY = {
    "ddpm_lucidrains": REPO / "configs/generator/tiny_lucidrains.yaml",
    "ddpm_diffusers": REPO / "configs/generator/tiny_diffusers.yaml",
}
# Made at commit acd922b, before the generator interface changed, by the old
# suite.sampling.samplers.sample_images on the models of FIXTURE_CONFIGS (torch.manual_seed(0)
# before building each; one thread): the same calls must give the same bytes.
FIXTURES = REPO / "tests/fixtures/generator_samples.npz"
FIXTURE_CONFIGS = {
    "ddpm_lucidrains": LucidrainsDDPMConfig(
        image_size=8, channels=1, dim=8, dim_mults=(1, 2), timesteps=20
    ),
    "ddpm_diffusers": DiffusersDDPMConfig(
        image_size=8,
        channels=1,
        block_out_channels=(8, 16),
        attention=(False, True),
        norm_num_groups=4,
        layers_per_block=1,
        timesteps=20,
        num_classes=3,
    ),  # fmt: skip
}
FIXTURE_STEPS = {"ddpm": 20, "ddim": 5, "dpm-solver": 5}


def tiny(kind: str, *overrides: str):
    torch.manual_seed(0)
    return build_generator(load_config(TINY[kind], list(overrides)).model).eval()


def sample(model, indices, sampler, steps, seed, labels=None, guidance=1.0) -> np.ndarray:
    conditions = Conditions(labels=labels) if labels is not None else None
    options = SampleOptions(sampler=sampler, steps=steps, guidance_scale=guidance)
    return model.sample(indices, seed, conditions, options).images


@pytest.mark.parametrize("kind", list(FIXTURE_CONFIGS))
def test_samples_are_the_bytes_of_before_the_interface_change(kind: str) -> None:
    fixtures = np.load(FIXTURES)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = build_generator(FIXTURE_CONFIGS[kind]).eval()
        built = fixtures[f"{kind}/weights_sha256"].tobytes().decode()
        assert weights_digest(model) == built, (
            "the model builds other weights: not a sampler change"
        )
        labels = np.array([0, 1, 2, 1]) if kind == "ddpm_diffusers" else None
        for sampler, steps in FIXTURE_STEPS.items():
            for guidance in [1.0, 2.0] if labels is not None else [1.0]:
                got = sample(model, [0, 3, 7, 1000], sampler, steps, 5, labels, guidance)
                want = fixtures[f"{kind}/{sampler}/g{guidance}"]
                assert got.dtype == want.dtype and np.array_equal(got, want), (sampler, guidance)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("kind", list(TINY))
@pytest.mark.parametrize("sampler", DIFFUSION_SAMPLERS)
def test_images_depend_only_on_their_index(kind: str, sampler: str) -> None:
    # ddpm walks every training step: 20 of them keep the test short
    model = tiny(kind, "model.timesteps=20")
    steps = 20 if sampler == "ddpm" else 4
    four = sample(model, [10, 11, 12, 13], sampler, steps, 5)
    two = sample(model, [12, 13], sampler, steps, 5)
    assert four.shape == (4, 1, 16, 16) and four.dtype == np.uint8
    np.testing.assert_array_equal(four[2:], two)  # same index, other batch: same image
    other_seed = sample(model, [12, 13], sampler, steps, 6)
    assert not np.array_equal(two, other_seed)


def test_attempts_draw_their_own_noise() -> None:
    model = tiny("ddpm_diffusers")
    first = model.sample([4], 0, None, SampleOptions(sampler="ddim", steps=3)).images
    again = model.sample([4], 0, None, SampleOptions(sampler="ddim", steps=3, attempt=0)).images
    second = model.sample([4], 0, None, SampleOptions(sampler="ddim", steps=3, attempt=1)).images
    assert np.array_equal(first, again) and not np.array_equal(first, second)


def test_sampling_leaves_the_model_in_training_mode_when_it_was() -> None:
    model = tiny("ddpm_lucidrains").train()
    sample(model, [0], "ddim", 2, 0)
    assert model.training


def test_lucidrains_schedule_is_its_own() -> None:
    model = tiny("ddpm_lucidrains")
    config = model.scheduler_config()
    assert config["prediction_type"] == "v_prediction"  # pred_v, the library default
    np.testing.assert_allclose(
        config["trained_betas"], model.diffusion.betas.double().numpy(), rtol=1e-6
    )
    scheduler = model.make_scheduler("ddpm", 50)
    # diffusers accumulates the product in float32, the library in float64: 1e-5 apart at t = T
    np.testing.assert_allclose(
        scheduler.alphas_cumprod.numpy(), model.diffusion.alphas_cumprod.numpy(), rtol=1e-4
    )


@pytest.mark.parametrize("objective", ["pred_v", "pred_noise"])
def test_ddpm_sampler_equals_the_librarys_p_sample_loop(objective: str) -> None:
    """Same model, same noise (one image: the library draws its noise from the global RNG in the
    order the suite's per-image generator does): the same image up to float32 rounding."""
    model = tiny("ddpm_lucidrains", f"model.objective={objective}")
    for p in model.parameters():  # a random, not zero-ish, network so the test has teeth
        p.data.normal_(0, 0.05, generator=torch.Generator().manual_seed(1))
    seed = 11
    from suite.generative.base import noise_seed

    ours = model.sample([3], seed, None, SampleOptions(sampler="ddpm", steps=50)).images
    torch.manual_seed(noise_seed(seed, 3))
    with torch.no_grad():
        theirs = model.diffusion.p_sample_loop((1, 1, 16, 16), return_all_timesteps=False)
    theirs_u8 = (theirs * 255).round().clamp(0, 255).to(torch.uint8).numpy()
    diff = np.abs(ours.astype(int) - theirs_u8.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.05, (diff.max(), (diff > 0).mean())
    assert ours.std() > 5  # not a constant image


def test_guided_class_conditional_sampling() -> None:
    model = tiny("ddpm_diffusers", "model.num_classes=3")
    labels = np.array([0, 2])
    plain = sample(model, [0, 1], "dpm-solver", 3, 0, labels, 1.0)
    guided = sample(model, [0, 1], "dpm-solver", 3, 0, labels, 3.0)
    assert not np.array_equal(plain, guided)


def test_step_count_and_sampler_checked() -> None:
    model = tiny("ddpm_lucidrains")
    with pytest.raises(ConfigError, match="outside 1..50"):
        model.make_scheduler("ddim", 51)
    with pytest.raises(ConfigError, match="unknown sampler"):
        model.make_scheduler("euler", 5)
    with pytest.raises(ConfigError, match="unknown sampler"):
        model.check_sampling(SampleOptions(sampler="euler", steps=5))


@pytest.mark.parametrize("kind", list(TINY))
def test_a_generator_whose_output_is_not_finite_fails_by_its_exports_name(
    kind: str, tmp_path: Path
) -> None:
    from suite.errors import DataError
    from suite.generative.export import export_generator, load_generator

    model = tiny(kind)
    with torch.no_grad():
        next(p for p in model.parameters() if p.ndim == 4).fill_(float("nan"))
    export_generator(model, tmp_path / "export", {}, [])
    loaded, _ = load_generator(tmp_path)
    with pytest.raises(DataError) as err:
        sample(loaded, range(2), "ddim", 3, seed=0)
    assert f"the generator export {tmp_path / 'export'} produced NaN/inf pixels" in str(err.value)
    assert "lower train.lr" in err.value.fix
