"""The sd_lora family on the tiny Stable Diffusion: only adapters train, resume, prompts, export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from suite.cli import main
from suite.train import run_state

REPO = Path(__file__).resolve().parents[3]
TINY = REPO / "configs/generator/tiny_sd_lora.yaml"
NAMES = ("adipose", "mucus")


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.unit.data.helpers import make_shard_set

    return make_shard_set(tmp_path_factory.mktemp("sd") / "s", n=8, classes=NAMES, size=16)


def load(tiny_sd: Path, shards: Path, out: Path, *extra: str):
    from suite.schema import load_config

    return load_config(TINY, [f"model.base={tiny_sd}", f"data.shards={shards}", "data.split=null",
                              f"run.out_dir={out}", *extra])  # fmt: skip


def without_lora(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A peft-wrapped module's base weights under their original names."""
    return {k.replace(".base_layer", ""): v for k, v in state.items() if "lora_" not in k}


@pytest.mark.parametrize(
    ("base", "message"),
    [
        (
            "stable-diffusion-v1-5/stable-diffusion-v1-5",
            "looks like a hub id, and nothing is fetched",
        ),
        ("{tmp}/absent", "does not exist"),
        ("{tmp}", "is not a Stable Diffusion folder (no unet, vae, text_encoder"),
    ],
    ids=["hub-id", "missing", "not-sd"],
)
def test_a_base_that_is_not_a_local_sd_folder_is_one_error(
    tmp_path: Path, shards: Path, capsys: pytest.CaptureFixture[str], base: str, message: str
) -> None:
    out = tmp_path / "runs"
    base = base.format(tmp=tmp_path)
    argv = ["train", "generator", str(TINY), f"model.base={base}", f"data.shards={shards}",
            "data.split=null", f"run.out_dir={out}"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"model.base {base!r}" in err and message in err
    assert "synmed models tiny-sd --out DIR" in err and "Traceback" not in err
    assert not out.exists()


def test_only_the_adapters_train_are_averaged_and_checkpointed(
    tiny_sd: Path, shards: Path, tmp_path: Path
) -> None:
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    from suite.generative.train import GeneratorTrainer

    trainer = GeneratorTrainer(load(tiny_sd, shards, tmp_path))
    model = trainer.generator
    initial = {k: v.clone() for k, v in model.trainable_state().items()}
    trainer.fit()
    state, _ = run_state.load_state(run_state.latest_checkpoint(tmp_path / "tiny-sd-lora"), rank=0)
    lora_keys = {f"unet_lora.{k}" for k in model.unet_lora.state_dict()}
    assert set(state["model"]) == lora_keys == set(initial)
    assert all("lora_" in k for k in lora_keys)
    ema = state["ema"]
    assert all("lora_" in k for k in ema if k.startswith("ema_model."))
    assert any(not torch.equal(initial[k], v) for k, v in model.trainable_state().items())
    # the frozen parts are bit for bit the base folder's
    unet = UNet2DConditionModel.from_pretrained(tiny_sd / "unet")
    assert without_lora(model.unet.state_dict()).keys() == unet.state_dict().keys()
    assert all(
        torch.equal(v, unet.state_dict()[k])
        for k, v in without_lora(model.unet.state_dict()).items()
    )
    text = CLIPTextModel.from_pretrained(tiny_sd / "text_encoder").state_dict()
    assert all(torch.equal(v, text[k]) for k, v in model.text_encoder.state_dict().items())
    assert all(not p.requires_grad for p in model.vae.parameters())
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert trainable == {id(p) for p in model.unet_lora.parameters()}


def test_resume_restores_the_adapters_exactly(tiny_sd: Path, shards: Path, tmp_path: Path) -> None:
    """diffusers' LoRA script once resumed without its LoRA weights (diffusers issue 12689)."""
    from suite.generative.train import GeneratorTrainer

    extra = (
        "model.num_classes=2",
        "train.grad_accum=2",
        "model.snr_gamma=5",
        "model.train_text_encoder=true",
    )
    GeneratorTrainer(load(tiny_sd, shards, tmp_path / "ref", *extra)).fit()
    GeneratorTrainer(load(tiny_sd, shards, tmp_path / "cut", *extra, "train.max_steps=2")).fit()
    GeneratorTrainer(load(tiny_sd, shards, tmp_path / "cut", *extra), resume="yes").fit()
    want, _ = run_state.load_state(
        run_state.latest_checkpoint(tmp_path / "ref/tiny-sd-lora"), rank=0
    )
    got, _ = run_state.load_state(
        run_state.latest_checkpoint(tmp_path / "cut/tiny-sd-lora"), rank=0
    )
    assert got["train_state"]["step"] == want["train_state"]["step"] == 4
    assert {k.split(".")[0] for k in want["model"]} == {"unet_lora", "text_lora"}
    for part in ("model", "ema"):
        assert want[part].keys() == got[part].keys()
        for name, tensor in want[part].items():
            if isinstance(tensor, torch.Tensor):
                assert torch.equal(got[part][name], tensor), f"{part}.{name}"
    ref = (tmp_path / "ref/tiny-sd-lora/export/pytorch_lora_weights.safetensors").read_bytes()
    assert (
        tmp_path / "cut/tiny-sd-lora/export/pytorch_lora_weights.safetensors"
    ).read_bytes() == ref


def test_prompts_come_from_captions_then_class_prompts_then_the_template(
    tiny_sd: Path, shards: Path, tmp_path: Path
) -> None:
    from suite.data.dataset import ShardDataset
    from suite.generative.families import build_generator

    captions = tmp_path / "metadata.jsonl"
    lines = [{"file_name": f"img{i}.png", "text": f"tile {i}"} for i in range(8)]
    captions.write_text("\n".join(json.dumps(line) for line in lines))
    data = ShardDataset(shards)
    batch = {"image": torch.zeros(3, 1, 16, 16), "index": torch.tensor([5, 0, 2]),
             "label": torch.tensor([1, 0, 0])}  # fmt: skip
    cfg = load(tiny_sd, shards, tmp_path, "model.num_classes=2", f"model.captions={captions}")
    model = build_generator(cfg.model)
    model.bind_data(NAMES, [0, 1])
    model.bind_rows(data)
    assert model.training_prompts(batch) == ["tile 5", "tile 0", "tile 2"]
    cfg = load(tiny_sd, shards, tmp_path, "model.num_classes=2",
               'model.class_prompts={"mucus": "mucus, H&E"}')  # fmt: skip
    model = build_generator(cfg.model)
    model.bind_data(NAMES, [0, 1])
    model.bind_rows(data)
    assert model.training_prompts(batch) == ["mucus, H&E", "a medical image of adipose",
                                             "a medical image of adipose"]  # fmt: skip
    model = build_generator(load(tiny_sd, shards, tmp_path).model)
    assert model.training_prompts(batch) == ["a chest x-ray"] * 3


def test_a_caption_file_missing_rows_is_one_error(
    tiny_sd: Path, shards: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    captions = tmp_path / "metadata.jsonl"
    captions.write_text(json.dumps({"file_name": "img0.png", "text": "tile 0"}) + "\n")
    out = tmp_path / "runs"
    argv = ["train", "generator", str(TINY), f"model.base={tiny_sd}", f"data.shards={shards}",
            "data.split=null", f"run.out_dir={out}", f"model.captions={captions}"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{captions} has no caption for 7 training rows (e.g. img1.png)" in err
    assert "Traceback" not in err and not (out / "tiny-sd-lora" / "export").exists()


def test_the_export_loads_into_a_diffusers_pipeline_and_matches_the_suites_sampler(
    tiny_sd: Path, shards: Path, tmp_path: Path
) -> None:
    """pytorch_lora_weights.safetensors is diffusers' LoRA format: load_lora_weights moves a
    StableDiffusionPipeline's output off the base's to what the suite's own sampler makes."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    from suite.generative.base import Conditions, SampleOptions, noise_generators
    from suite.generative.export import export_generator, load_generator
    from suite.generative.families import build_generator

    model = build_generator(
        load(tiny_sd, shards, tmp_path, "model.image_size=32", "model.channels=3").model
    )
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # adapters far from their zero start, so the change is plain to see
        for p in model.unet_lora.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    export_generator(model, tmp_path / "export", {}, class_names=[])
    loaded, _ = load_generator(tmp_path / "export")
    prompt, steps, scale = "a chest x-ray", 4, 3.0
    options = SampleOptions(sampler="ddim", steps=steps, guidance_scale=scale)
    ours = loaded.sample([0, 1], 7, Conditions(prompts=[prompt] * 2), options).images
    noise = torch.stack([torch.randn(loaded.latent_shape(), generator=x)
                         for x in noise_generators(7, [0, 1])])  # fmt: skip

    def pipeline_images(pipe: StableDiffusionPipeline) -> np.ndarray:
        # the suite's DDIM: SD's schedule with x0 unclipped and alpha_T = 1 at the last step
        pipe.scheduler = DDIMScheduler(**loaded.scheduler_config(), clip_sample=False,
                                       set_alpha_to_one=True)  # fmt: skip
        out = pipe([prompt] * 2, latents=noise.clone(), num_inference_steps=steps, height=32,
                   width=32, guidance_scale=scale, output_type="np").images  # fmt: skip
        return (out.transpose(0, 3, 1, 2) * 255).round().astype(np.int16)

    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd, local_files_only=True)
    base = pipeline_images(pipe)
    pipe.load_lora_weights(tmp_path / "export", weight_name="pytorch_lora_weights.safetensors")
    with_lora = pipeline_images(pipe)
    ours16 = ours.astype(np.int16)
    changed = np.abs(with_lora - base).mean()
    assert changed > 5  # grey levels: the adapters move the output
    # rounding and batch order (CFG halves swapped) leave at most a grey level or two
    assert np.abs(ours16 - with_lora).max() <= 2
    assert np.abs(ours16 - with_lora).mean() < 0.05 * changed


def test_sampled_rows_carry_their_prompt_and_the_adapter_digest(
    tiny_sd: Path, shards: Path, tmp_path: Path
) -> None:
    from suite.artifacts.digests import sha256_text
    from suite.generative.base import Conditions, SampleOptions
    from suite.generative.families import build_generator

    model = build_generator(load(tiny_sd, shards, tmp_path, "model.num_classes=2").model)
    model.bind_data(NAMES, [0, 1])
    options = SampleOptions(sampler="ddim", steps=2, guidance_scale=3.0, negative_prompt="blurry")
    out = model.sample([3, 4], 0, Conditions(labels=np.array([1, 0])), options)
    assert out.images.shape == (2, 1, 16, 16) and out.images.dtype == np.uint8
    assert out.prompts == ["a medical image of mucus", "a medical image of adipose"]
    digest = model.trained_digest()
    assert [m["adapter_sha256"] for m in out.metadata] == [digest] * 2
    assert [m["prompt_sha256"] for m in out.metadata] == [sha256_text(p) for p in out.prompts]
    # the same index and attempt give the same image; another attempt draws other noise
    again = model.sample([4], 0, Conditions(labels=np.array([0])), options)
    assert np.array_equal(again.images[0], out.images[1])
    other = model.sample([4], 0, Conditions(labels=np.array([0])),
                         SampleOptions(sampler="ddim", steps=2, guidance_scale=3.0,
                                       negative_prompt="blurry", attempt=1))  # fmt: skip
    assert not np.array_equal(other.images[0], out.images[1])


def test_cosine_with_warm_restarts_matches_torch() -> None:
    from suite.generative.optim import lr_lambda
    from suite.train.config import TrainConfig

    cfg = TrainConfig(lr_schedule="cosine_restarts", lr_restart_steps=3, lr_restart_mult=2)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    ref = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=3, T_mult=2)
    want = []
    for _ in range(20):
        want.append(opt.param_groups[0]["lr"])
        opt.step()
        ref.step()
    factor = lr_lambda(cfg)
    assert [factor(s) for s in range(20)] == pytest.approx(want, abs=1e-12)


def test_under_bf16_the_base_is_stored_in_bf16_and_the_adapters_train_in_float32(
    tiny_sd: Path, shards: Path, tmp_path: Path
) -> None:
    """As the diffusers script's weight_dtype: the frozen base only runs forward, in half
    precision; adapters, their EMA and the export stay float32."""
    from safetensors.torch import load_file

    from suite.generative.train import GeneratorTrainer

    trainer = GeneratorTrainer(load(tiny_sd, shards, tmp_path, "train.mixed_precision=bf16"))
    summary = trainer.fit()
    model = trainer.generator
    frozen = [p for m in (model.unet, model.vae, model.text_encoder)
              for n, p in m.named_parameters() if "lora_" not in n]  # fmt: skip
    assert frozen and all(p.dtype == torch.bfloat16 for p in frozen)
    assert all(p.dtype == torch.float32 and p.requires_grad for p in model.unet_lora.parameters())
    assert all(v.dtype == torch.float32 for v in trainer.ema.ema_model.state_dict().values())
    weights = load_file(tmp_path / "tiny-sd-lora/export/pytorch_lora_weights.safetensors")
    assert weights and all(v.dtype == torch.float32 for v in weights.values())
    assert (Path(summary["run"]) / "samples" / "step-00000004.png").is_file()


def test_resume_on_a_changed_base_model_is_refused(
    tiny_sd: Path, shards: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    base = shutil.copytree(tiny_sd, tmp_path / "base")
    argv = ["train", "generator", str(TINY), f"model.base={base}", f"data.shards={shards}",
            "data.split=null", f"run.out_dir={tmp_path / 'runs'}"]  # fmt: skip
    assert main([*argv, "train.max_steps=2"]) == 0
    config = base / "scheduler" / "scheduler_config.json"
    config.write_text(config.read_text() + "\n")
    capsys.readouterr()
    assert main([*argv, "--resume"]) == 2
    err = capsys.readouterr().err
    assert f"the stable_diffusion base model {base} changed since the checkpoint" in err
    assert "Traceback" not in err
    assert not (tmp_path / "runs" / "tiny-sd-lora" / "checkpoints" / "step-00000004").exists()


def test_a_conditioning_set_with_prompts_gives_each_row_its_text(
    tiny_sd: Path, shards: Path, tmp_path: Path
) -> None:
    """--conditions SET on a text-to-image generator: output row i is drawn from the prompt of
    conditioning row i // K (a sampled set records its prompts)."""
    from suite.data.writer import ShardSetWriter
    from suite.generative.families import build_generator
    from suite.sampling.job import ConditionReader, condition_source, make_plan, sample_rows
    from tests.unit.data.helpers import pattern

    texts = ["a chest x-ray", "a knee MRI", "a skin lesion"]
    cond = tmp_path / "cond"
    cond.mkdir()
    writer = ShardSetWriter(cond, {"source": "synthetic", "class_names": [], "label_kind": "none"})
    for i, text in enumerate(texts):
        writer.add({"images": pattern(i, 16), "index": i, "prompts": text})
    writer.close()
    model = build_generator(load(tiny_sd, shards, tmp_path).model)
    source = condition_source(model, cond, None)
    assert source.kinds == ("prompts",)
    plan = make_plan("x", [], 0, samplers=model.samplers, conditions=source, per_condition=2,
                     num_images=None, per_class=None, class_weights=None, shard_size=6,
                     batch_size=4, sampler="ddim", steps=2, seed=0, guidance_scale=1.0)  # fmt: skip
    rows = sample_rows(model, plan, 0, 6, ConditionReader(cond, plan), "cpu")
    assert rows["prompts"].tolist() == [t for t in texts for _ in range(2)]
    assert rows["source_index"].tolist() == [0, 0, 1, 1, 2, 2]
