"""The controlnet family on the tiny Stable Diffusion: what trains, resume, hints, pairs, export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from suite.cli import main
from suite.train import run_state

REPO = Path(__file__).resolve().parents[3]
TINY = REPO / "configs/generator/tiny_controlnet.yaml"


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Eight 16 px image+mask rows and their edge maps (``synmed data edges``)."""
    from suite.data.edges import write_edge_set
    from tests.unit.data.helpers import make_shard_set

    root = tmp_path_factory.mktemp("cn")
    shards = make_shard_set(root / "s", n=8, classes=("a", "b"), size=16, masks=True)
    write_edge_set(shards, root / "edges", progress=False)
    return shards, root / "edges"


def load(tiny_sd: Path, pairs: tuple[Path, Path], out: Path, *extra: str):
    from suite.schema import load_config

    shards, hints = pairs
    return load_config(TINY, [f"model.base={tiny_sd}", f"data.shards={shards}", "data.split=null",
                              f"model.hints={hints}", f"run.out_dir={out}", *extra])  # fmt: skip


def test_only_the_controlnet_trains_and_the_base_stays_bit_identical(
    tiny_sd: Path, pairs: tuple[Path, Path], tmp_path: Path
) -> None:
    from diffusers import UNet2DConditionModel

    from suite.generative.train import GeneratorTrainer

    trainer = GeneratorTrainer(load(tiny_sd, pairs, tmp_path))
    model = trainer.generator
    before = {k: v.clone() for k, v in model.controlnet.state_dict().items()}
    trainer.fit()
    state, _ = run_state.load_state(run_state.latest_checkpoint(tmp_path / "tiny-controlnet"), 0)
    assert set(state["model"]) == {f"controlnet.{k}" for k in before}
    assert any(not torch.equal(before[k], v) for k, v in model.controlnet.state_dict().items())
    unet = UNet2DConditionModel.from_pretrained(tiny_sd / "unet").state_dict()
    assert all(torch.equal(v, unet[k]) for k, v in model.unet.state_dict().items())
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert trainable == {id(p) for p in model.controlnet.parameters()}


def test_resume_restores_the_controlnet_exactly(
    tiny_sd: Path, pairs: tuple[Path, Path], tmp_path: Path
) -> None:
    from suite.generative.train import GeneratorTrainer

    GeneratorTrainer(load(tiny_sd, pairs, tmp_path / "ref")).fit()
    GeneratorTrainer(load(tiny_sd, pairs, tmp_path / "cut", "train.max_steps=2")).fit()
    GeneratorTrainer(load(tiny_sd, pairs, tmp_path / "cut"), resume="yes").fit()
    ref = run_state.latest_checkpoint(tmp_path / "ref/tiny-controlnet")
    cut = run_state.latest_checkpoint(tmp_path / "cut/tiny-controlnet")
    want, got = run_state.load_state(ref, 0)[0], run_state.load_state(cut, 0)[0]
    assert got["train_state"]["step"] == want["train_state"]["step"] == 4
    for part in ("model", "ema"):
        assert want[part].keys() == got[part].keys()
        for name, tensor in want[part].items():
            if isinstance(tensor, torch.Tensor):
                assert torch.equal(got[part][name], tensor), f"{part}.{name}"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["model.hints=null"], "model.hints is not set"),
        (["model.hints={tmp}"], "is not a shard set"),
        (
            ["model.conditioning_embedding_out_channels=[16,32,96]"],
            "so the hint is downsampled 4x, but the base's VAE downsamples 2x",
        ),  # fmt: skip
    ],
    ids=["no-hints", "not-a-set", "levels"],
)
def test_unusable_hints_are_one_error_and_no_run(
    tiny_sd: Path, pairs: tuple[Path, Path], tmp_path: Path,
    capsys: pytest.CaptureFixture[str], extra: list[str], message: str,
) -> None:  # fmt: skip
    shards, hints = pairs
    out = tmp_path / "runs"
    argv = ["train", "generator", str(TINY), f"model.base={tiny_sd}", f"data.shards={shards}",
            "data.split=null", f"model.hints={hints}", f"run.out_dir={out}",
            *(e.format(tmp=tmp_path) for e in extra)]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (out / "tiny-controlnet" / "export").exists()


def test_hints_of_other_rows_are_refused(
    tiny_sd: Path, pairs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from suite.data.edges import write_edge_set
    from tests.unit.data.helpers import make_shard_set

    other = make_shard_set(tmp_path / "o", n=4, classes=("a", "b"), size=16, masks=True)
    write_edge_set(other, tmp_path / "oe", progress=False)
    shards, _ = pairs
    argv = ["train", "generator", str(TINY), f"model.base={tiny_sd}", f"data.shards={shards}",
            "data.split=null", f"model.hints={tmp_path / 'oe'}", f"run.out_dir={tmp_path}"]  # fmt: skip
    assert main(argv) == 2
    assert "has no hint for 4 training rows (e.g. index 4)" in capsys.readouterr().err


def test_sampling_from_hints_gives_image_mask_pairs_that_name_their_source(
    tiny_sd: Path, pairs: tuple[Path, Path], tmp_path: Path
) -> None:
    from suite.data.dataset import ShardDataset
    from suite.generative.families import build_generator
    from suite.sampling.job import ConditionReader, condition_source, make_plan, sample_rows

    shards, hints = pairs
    model = build_generator(load(tiny_sd, pairs, tmp_path).model)
    source = condition_source(model, hints, None)
    assert source.kinds == ("images", "masks")  # no classes: labels are not read
    plan = make_plan("x", [], 0, samplers=model.samplers, conditions=source, per_condition=2,
                     num_images=None, per_class=None, class_weights=None, shard_size=16,
                     batch_size=3, sampler="ddim", steps=2, seed=0, guidance_scale=3.0)  # fmt: skip
    rows = sample_rows(model, plan, 0, 16, ConditionReader(hints, plan), "cpu")
    real = ShardDataset(shards)
    assert rows["source_index"].tolist() == [i // 2 for i in range(16)]
    for i, source_index in enumerate(rows["source_index"]):
        assert np.array_equal(rows["masks"][i], real[int(source_index)]["mask"].numpy())
    assert rows["images"].shape == (16, 1, 16, 16)


def test_the_export_loads_into_the_diffusers_controlnet_pipeline_and_matches_the_sampler(
    tiny_sd: Path, pairs: tuple[Path, Path], tmp_path: Path
) -> None:
    from diffusers import (
        ControlNetModel,
        DDIMScheduler,
        StableDiffusionControlNetPipeline,
        StableDiffusionPipeline,
    )

    from suite.generative.base import Conditions, SampleOptions, noise_generators
    from suite.generative.export import export_generator, load_generator
    from suite.generative.families import build_generator

    model = build_generator(load(tiny_sd, pairs, tmp_path, "model.image_size=32",
                                 "model.channels=3").model)  # fmt: skip
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # zero convolutions start at 0: move them so the hint matters
        for p in model.controlnet.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.5)
    export_generator(model, tmp_path / "export", {}, class_names=[])
    loaded, _ = load_generator(tmp_path / "export")
    hint = (np.random.default_rng(0).random((2, 1, 32, 32)) > 0.8).astype(np.uint8) * 255
    prompt, steps, scale = "an ultrasound image", 3, 3.0
    options = SampleOptions(sampler="ddim", steps=steps, guidance_scale=scale)
    ours = loaded.sample([0, 1], 5, Conditions(images=hint, prompts=[prompt] * 2), options).images
    noise = torch.stack([torch.randn(loaded.latent_shape(), generator=x)
                         for x in noise_generators(5, [0, 1])])  # fmt: skip
    base = StableDiffusionPipeline.from_pretrained(tiny_sd, local_files_only=True)
    pipe = StableDiffusionControlNetPipeline(
        **{k: v for k, v in base.components.items() if k != "image_encoder"},
        controlnet=ControlNetModel.from_pretrained(tmp_path / "export" / "controlnet"),
    )
    pipe.scheduler = DDIMScheduler(**loaded.scheduler_config(), clip_sample=False,
                                   set_alpha_to_one=True)  # fmt: skip
    out = pipe([prompt] * 2, image=torch.from_numpy(hint).float().div(255), latents=noise.clone(),
               num_inference_steps=steps, height=32, width=32, guidance_scale=scale,
               output_type="np", guess_mode=False).images  # fmt: skip
    theirs = (out.transpose(0, 3, 1, 2) * 255).round().astype(np.int16)
    assert np.abs(ours.astype(np.int16) - theirs).max() <= 2
    # and the hint steers the image (zero convolutions moved off zero above)
    other = loaded.sample([0, 1], 5, Conditions(images=255 - hint, prompts=[prompt] * 2), options)
    assert np.abs(other.images.astype(np.int16) - ours).mean() > 1
