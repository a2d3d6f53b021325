"""DreamBooth's workflow through the CLI, as docs/latent-diffusion.md gives it: `synmed generator
init` exports the base model, `synmed sample --prompt CLASS_PROMPT` draws the class images on
Ray (``sd_class_images``, the session's), `synmed train generator` trains on the instance images
with them. The class images are the base model's own samples; every micro-batch carries as many
class images; the text encoder's adapters are checkpointed; a class image set that is no shard
set, too small or sampled under another prompt is one error and no run output.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from suite.cli import main
from suite.data.dataset import ShardDataset
from tests.integration.conftest import SD_CLASS_PROMPT
from tests.integration.helpers import REPO

pytestmark = pytest.mark.ray
RECIPE = REPO / "configs/papers/ort-thesis/sd15_dreambooth.yaml"
RUN = "ort-thesis-sd15-dreambooth"


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.unit.data.helpers import make_shard_set

    return make_shard_set(tmp_path_factory.mktemp("db") / "instance", n=4, classes=("xray",))


def overrides(tiny_sd: Path, instance: Path, class_images: Path, out: Path) -> list[str]:
    return [f"model.base={tiny_sd}", "model.image_size=16", "model.channels=1",
            f"model.class_images={class_images}", "model.min_class_images=4",
            f"data.shards={instance}", "data.split=null", f"run.out_dir={out}",
            "train.max_steps=2", "train.batch_size=2", "train.num_workers=0",
            "train.checkpoint_every=2", "train.sample_every=2", "train.sample_images=2",
            "train.sample_steps=2"]  # fmt: skip


def test_the_class_images_are_the_base_models_samples_of_the_class_prompt(
    sd_class_images: tuple[Path, Path],
) -> None:
    from suite.data.verify import verify_shard_set
    from suite.generative.base import Conditions, SampleOptions
    from suite.generative.export import load_generator
    from suite.sampling.job import plan_from_dict

    init, class_images = sd_class_images
    assert verify_shard_set(class_images).count == 4
    data = ShardDataset(class_images)
    assert list(data.read_column("prompts")) == [SD_CLASS_PROMPT] * 4
    model, _ = load_generator(init)
    # the untrained export is the base: peft's lora_B starts at zero
    assert all(not p.any() for n, p in model.unet_lora.named_parameters() if "lora_B" in n)
    plan = plan_from_dict(json.loads((class_images / "job.json").read_text())["plan"])
    assert plan.prompt == SD_CLASS_PROMPT
    indices = [int(i) for i in data.indices]
    options = SampleOptions(sampler=plan.sampler, steps=plan.steps,
                            guidance_scale=plan.guidance_scale,
                            negative_prompt=plan.negative_prompt)  # fmt: skip
    want = model.sample(indices, plan.seed, Conditions(prompts=[SD_CLASS_PROMPT] * 4), options)
    for row in range(len(data)):
        got = data[row]["image"].numpy()
        assert got.dtype == np.uint8 and got.tobytes() == want.images[row].tobytes(), indices[row]
    digest = model.trained_digest()
    assert {json.loads(m)["adapter_sha256"] for m in data.read_column("metadata")} == {digest}


def test_dreambooth_trains_with_the_prior_batch_and_checkpoints_the_text_adapters(
    tiny_sd: Path, instance: Path, sd_class_images: tuple[Path, Path], tmp_path: Path
) -> None:
    from safetensors import safe_open

    from suite.generative.train import GeneratorTrainer
    from suite.schema import load_config
    from suite.train import run_state

    _, class_images = sd_class_images
    argv = overrides(tiny_sd, instance, class_images, tmp_path / "cli")
    assert main(["train", "generator", str(RECIPE), *argv]) == 0
    run = tmp_path / "cli" / RUN
    state, _ = run_state.load_state(run_state.latest_checkpoint(run), rank=0)
    assert {k.split(".")[0] for k in state["model"]} == {"unet_lora", "text_lora"}
    with safe_open(str(run / "export" / "pytorch_lora_weights.safetensors"), "pt") as f:
        assert {k.split(".")[0] for k in f.keys()} == {"unet", "text_encoder"}  # noqa: SIM118

    # every training call of the UNet holds the 2 instance and 2 class rows
    cfg = load_config(RECIPE, [*overrides(tiny_sd, instance, class_images, tmp_path / "hook"),
                               "train.max_steps=1"])  # fmt: skip
    trainer = GeneratorTrainer(cfg)
    model = trainer.generator
    calls: list[int] = []
    model.unet.register_forward_pre_hook(
        lambda _m, args: calls.append(args[0].shape[0]) if torch.is_grad_enabled() else None
    )
    trainer.fit()
    assert calls == [4]
    # the loss: the instance rows' mean plus prior_loss_weight times the class rows' (drawn from
    # model.class_images, under model.class_prompt)
    batch = {"image": torch.rand(2, 1, 16, 16), "index": torch.tensor([0, 1])}
    prior = model._prior
    with torch.no_grad():
        torch.manual_seed(0)
        rows = torch.randint(0, len(prior), (2,)).tolist()
        images = torch.cat([batch["image"], torch.stack([prior[r]["image"] for r in rows])])
        prompts = [model.config.prompt] * 2 + [SD_CLASS_PROMPT] * 2
        per_row = model.per_row_loss(images, prompts)
        for weight in (0.0, 1.0, 2.5):
            model.config = dataclasses.replace(model.config, prior_loss_weight=weight)
            torch.manual_seed(0)
            want = per_row[:2].mean() + weight * per_row[2:].mean()
            assert model.loss(batch, "").item() == pytest.approx(want.item(), rel=1e-6), weight
    assert per_row[2:].mean() > 0


MAKE = "synmed sample --checkpoint BASE --prompt"  # the fix: how to make them


@pytest.mark.parametrize(
    ("case", "message", "fix"),
    [
        pytest.param("not-a-shard-set", "model.class_images {path} is not a shard set", MAKE,
                     id="not-a-shard-set"),
        pytest.param("too-few", "model.class_images {path} holds 4 images, fewer than "
                     "model.min_class_images=5", MAKE, id="too-few"),
        pytest.param("other-prompt", "model.class_images {path} was sampled with the prompt "
                     "'a chest xray', not model.class_prompt 'a brain MRI'", MAKE,
                     id="other-prompt"),
        pytest.param("other-size", "model.class_images {path} holds (1, 8, 8) (C, H, W) images, "
                     "the instance images are (1, 16, 16)",
                     "sample the class images at the instance images' size and channels",
                     id="other-size"),
        pytest.param("no-class-prompt", "model.class_images is set but model.class_prompt is "
                     "empty", "set model.class_prompt to the prompt the class images were "
                     "sampled with", id="no-class-prompt"),
    ],
)  # fmt: skip
def test_unusable_class_images_are_one_error_and_no_run(
    tiny_sd: Path,
    instance: Path,
    sd_class_images: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    case: str,
    message: str,
    fix: str,
) -> None:
    from suite.data.verify import verify_shard_set

    _, class_images = sd_class_images
    extra: list[str] = []
    if case == "not-a-shard-set":  # the class image files, not the sampled set
        class_images = tmp_path / "pngs"
        class_images.mkdir()
        (class_images / "0.png").write_bytes(b"\x89PNG")
    elif case == "other-size":  # 8 px images: a set of another ingest
        from tests.unit.data.helpers import make_shard_set

        class_images = make_shard_set(tmp_path / "small", n=4, classes=("xray",), size=8)
    elif case == "too-few":
        extra = ["model.min_class_images=5"]
    elif case == "other-prompt":
        extra = ["model.class_prompt=a brain MRI"]
    else:
        extra = ["model.class_prompt=''"]
    out = tmp_path / "runs"
    argv = [*overrides(tiny_sd, instance, class_images, out), *extra]
    assert main(["train", "generator", str(RECIPE), *argv]) == 2
    err = capsys.readouterr().err
    assert message.format(path=class_images) in err and "Traceback" not in err
    assert fix in err.split("fix:", 1)[1]
    assert not out.exists()  # no run folder, let alone an export
    if case != "not-a-shard-set":
        assert verify_shard_set(class_images).count == 4  # the input is untouched


def test_following_the_fix_for_too_few_class_images_gives_a_set_that_trains(
    tiny_sd: Path,
    instance: Path,
    sd_class_images: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import shlex

    init, class_images = sd_class_images
    argv = [*overrides(tiny_sd, instance, class_images, tmp_path / "runs"),
            "model.min_class_images=5"]  # fmt: skip
    assert main(["train", "generator", str(RECIPE), *argv]) == 2
    fix = capsys.readouterr().err.split("fix:", 1)[1].strip()
    command = shlex.split(fix[fix.index("synmed sample") :].split(";")[0].split(", then")[0])
    new = {"BASE": str(init), "DIR": str(tmp_path / "new"), "NEW_DIR": str(tmp_path / "new")}
    command = [new.get(word, word) for word in command[1:]]
    # as the fix says, at the tiny scale's 2 steps instead of the default 1000
    assert main([*command, "--sampling-steps", "2"]) == 0
    followed = command[command.index("--out") + 1]
    argv = [*argv, f"model.class_images={followed}"]
    assert main(["train", "generator", str(RECIPE), *argv]) == 0


def test_a_resumed_dreambooth_run_draws_the_same_class_rows_and_adapters(
    tiny_sd: Path, instance: Path, sd_class_images: tuple[Path, Path], tmp_path: Path
) -> None:
    """The class rows come from torch's global generator, which the checkpoint carries."""
    from suite.generative.train import GeneratorTrainer
    from suite.schema import load_config
    from suite.train import run_state

    _, class_images = sd_class_images

    def cfg(out: Path, *extra: str):
        argv = overrides(tiny_sd, instance, class_images, out)
        return load_config(
            RECIPE,
            [
                *argv,
                "train.max_steps=4",
                "train.checkpoint_every=2",
                "train.sample_every=100",
                *extra,
            ],
        )

    GeneratorTrainer(cfg(tmp_path / "ref")).fit()
    GeneratorTrainer(cfg(tmp_path / "cut", "train.max_steps=2")).fit()
    GeneratorTrainer(cfg(tmp_path / "cut"), resume="yes").fit()
    want, _ = run_state.load_state(run_state.latest_checkpoint(tmp_path / "ref" / RUN), rank=0)
    got, _ = run_state.load_state(run_state.latest_checkpoint(tmp_path / "cut" / RUN), rank=0)
    assert got["train_state"]["step"] == want["train_state"]["step"] == 4
    assert want["model"].keys() == got["model"].keys()
    assert all(torch.equal(got["model"][k], v) for k, v in want["model"].items())
