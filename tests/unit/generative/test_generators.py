"""Both DDPM families: loss, previews that leave the global RNG alone, export and reload, and the
interface every family implements."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from suite.artifacts.exports import EXPORT_META
from suite.errors import ConfigError, DataError
from suite.generative.base import Generator
from suite.generative.configs import DiffusersDDPMConfig, LucidrainsDDPMConfig
from suite.generative.ddpm_diffusers import DiffusersDDPM
from suite.generative.export import export_generator, load_generator
from suite.generative.families import GENERATORS, build_generator
from suite.schema import load_config

REPO = Path(__file__).resolve().parents[3]
TINY = {
    "ddpm_lucidrains": REPO / "configs/generator/tiny_lucidrains.yaml",
    "ddpm_diffusers": REPO / "configs/generator/tiny_diffusers.yaml",
}
# every family's tiny preset (the tests above are the DDPMs'; tests/unit/generative/test_gan.py
# has the GANs')
TINY_ALL = {
    **TINY,
    "dcgan": REPO / "configs/generator/tiny_dcgan.yaml",
    "acgan": REPO / "configs/generator/tiny_acgan.yaml",
    "pggan": REPO / "configs/generator/tiny_pggan.yaml",
    "sd_lora": REPO / "configs/generator/tiny_sd_lora.yaml",
    "sd_dreambooth": REPO / "configs/generator/tiny_sd_lora.yaml",
    "controlnet": REPO / "configs/generator/tiny_controlnet.yaml",
    "mask_ddpm": REPO / "configs/generator/tiny_mask_ddpm.yaml",
}
# the latent-diffusion families build on the tiny Stable Diffusion folder (a session fixture)
ON_TINY_SD = ("sd_lora", "sd_dreambooth", "controlnet")


def tiny(kind: str, *overrides: str):
    torch.manual_seed(0)
    return build_generator(load_config(TINY_ALL[kind], list(overrides)).model)


@pytest.mark.parametrize("kind", list(TINY))
def test_loss_is_a_finite_scalar_with_gradients(kind: str) -> None:
    model = tiny(kind)
    images = torch.rand(2, 1, 16, 16)
    loss = model({"image": images}, "model")
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("kind", list(TINY))
def test_preview_is_seeded_and_leaves_global_rng(kind: str) -> None:
    model = tiny(kind).eval()
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = model.sample_preview(2, steps=3, seed=7)
    assert torch.equal(torch.get_rng_state(), before)
    b = model.sample_preview(2, steps=3, seed=7)
    assert a.shape == (2, 1, 16, 16) and torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 1
    assert not torch.equal(a, model.sample_preview(2, steps=3, seed=8))


@pytest.mark.parametrize("kind", list(TINY))
def test_export_reloads_to_the_same_model(kind: str, tmp_path: Path) -> None:
    model = tiny(kind).eval()
    digest = export_generator(model, tmp_path / "export", {"config_digest": "x"}, ["a"])
    again, loaded_digest = load_generator(tmp_path)  # a run folder: its export/ is read
    assert again.config == model.config and loaded_digest == digest
    assert again.class_names == ["a"] and not again.training
    meta = json.loads((tmp_path / "export" / EXPORT_META).read_text())
    assert meta["kind"] == "generator" and meta["family"] == kind and meta["version"] == 1
    assert meta["provenance"] == {"config_digest": "x"} and meta["files"]
    assert torch.equal(
        model.sample_preview(2, steps=3, seed=1), again.sample_preview(2, steps=3, seed=1)
    )


def test_diffusers_export_is_a_pipeline_folder(tmp_path: Path) -> None:
    from diffusers import DDPMScheduler, DiffusionPipeline

    model = tiny("ddpm_diffusers", "model.num_classes=3")
    export_generator(model, tmp_path / "export", {}, [])
    pipe = DiffusionPipeline.from_pretrained(tmp_path / "export")
    assert isinstance(pipe.scheduler, DDPMScheduler)
    assert pipe.unet.config.num_class_embeds == 4  # 3 classes + the "no class" id
    for name, p in pipe.unet.state_dict().items():
        assert torch.equal(p, model.unet.state_dict()[name])


def test_class_conditional_guidance_changes_samples() -> None:
    model = tiny("ddpm_diffusers", "model.num_classes=3").eval()
    labels = torch.tensor([0, 2])
    model.config.guidance_scale = 1.0
    plain = model.sample_preview(2, steps=3, seed=0, labels=labels)
    model.config.guidance_scale = 4.0
    guided = model.sample_preview(2, steps=3, seed=0, labels=labels)
    assert not torch.equal(plain, guided)


def test_label_dropout_uses_the_null_class() -> None:
    model = tiny("ddpm_diffusers", "model.num_classes=3", "model.class_dropout=1.0")
    seen = []
    model.unet.register_forward_pre_hook(
        lambda m, args, kwargs: seen.append(kwargs["class_labels"]), with_kwargs=True
    )
    model({"image": torch.rand(4, 1, 16, 16), "label": torch.tensor([0, 1, 2, 0])}, "model")
    assert seen[0].tolist() == [3, 3, 3, 3]


def test_config_errors_for_generators() -> None:
    with pytest.raises(ConfigError, match="attention has 1 flags"):
        DiffusersDDPM(
            DiffusersDDPMConfig(block_out_channels=(8, 16), attention=(False,), norm_num_groups=4)
        )
    assert LucidrainsDDPMConfig().objective == "pred_v"  # the library default seed 000 relied on


def test_an_export_is_checked_before_loading(tmp_path: Path) -> None:
    model = tiny("ddpm_lucidrains")
    export_generator(model, tmp_path / "export", {}, [])
    weights = tmp_path / "export" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(DataError, match="does not match the digest"):
        load_generator(tmp_path / "export")
    (tmp_path / "export" / EXPORT_META).unlink()
    with pytest.raises(DataError, match="not a synmed generator export"):
        load_generator(tmp_path / "export")


def test_a_half_written_family_cannot_be_built() -> None:
    class NoSampling(Generator):
        def trainable_modules(self):
            return {}

    with pytest.raises(TypeError, match="abstract"):
        NoSampling()


@pytest.mark.parametrize("kind", list(GENERATORS))
def test_every_family_declares_samplers_and_trains_what_it_names(
    kind: str, request: pytest.FixtureRequest
) -> None:
    extra = []
    if kind in ON_TINY_SD:
        extra = [f"model.kind={kind}", f"model.base={request.getfixturevalue('tiny_sd')}"]
    model = tiny(kind, *extra)
    assert model.samplers and model.config_class is type(model.config)
    trainable = {id(p) for m in model.trainable_modules().values() for p in m.parameters()}
    specs = model.configure_optimizers(load_config(TINY_ALL[kind]).train)
    optimized = {
        id(p) for spec in specs.values() for g in spec.optimizer.param_groups for p in g["params"]
    }
    assert optimized == trainable


def test_weights_from_swaps_in_and_restores_exactly_even_on_error() -> None:
    model = tiny("ddpm_diffusers").train()
    before = {k: v.clone() for k, v in model.unet.state_dict().items()}
    other = tiny("ddpm_diffusers")
    for p in other.parameters():
        p.data.add_(1.0)
    with pytest.raises(RuntimeError, match="inside"), model.weights_from({"unet": other.unet}) as m:
        assert not m.training
        assert torch.equal(m.unet.conv_in.weight, other.unet.conv_in.weight)
        raise RuntimeError("inside")
    assert model.training
    assert all(torch.equal(v, before[k]) for k, v in model.unet.state_dict().items())


@pytest.mark.parametrize("kind", ["ddpm_lucidrains", "dcgan"])
def test_an_untrained_export_of_a_family_without_classes_loads(kind: str, tmp_path: Path) -> None:
    from suite.generative.export import export_initial

    cfg = load_config(TINY_ALL[kind])
    export_initial(cfg, tmp_path / "init")
    model, _ = load_generator(tmp_path / "init")
    assert model.config == build_generator(cfg.model).config
