"""The Stable Diffusion families end to end on the tiny base: sd_lora on two gloo ranks and two SLURM
nodes, sampling through Ray with prompts and adapter digests in the shards, and a ControlNet on two
gloo ranks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from suite.data.dataset import ShardDataset
from suite.data.verify import verify_shard_set
from tests.integration.helpers import synmed, synmed_on_two_gloo_ranks

REPO = Path(__file__).resolve().parents[2]
TINY = str(REPO / "configs/generator/tiny_sd_lora.yaml")
NAMES = ("adipose", "mucus", "stroma")


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.unit.data.helpers import make_shard_set

    return make_shard_set(tmp_path_factory.mktemp("sd") / "s", n=12, classes=NAMES, size=16)


def overrides(tiny_sd: Path, shards: Path, out: Path) -> list[str]:
    return [f"model.base={tiny_sd}", f"data.shards={shards}", "data.split=null",
            f"run.out_dir={out}", "model.num_classes=3"]  # fmt: skip


@pytest.fixture(scope="module")
def lora_run(tiny_sd: Path, shards: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from suite.generative.train import GeneratorTrainer
    from suite.schema import load_config

    out = tmp_path_factory.mktemp("lora")
    GeneratorTrainer(load_config(TINY, overrides(tiny_sd, shards, out))).fit()
    return out / "tiny-sd-lora"


def test_two_gloo_ranks_train_the_adapters_in_sync(
    tiny_sd: Path, shards: Path, tmp_path: Path
) -> None:
    proc = synmed_on_two_gloo_ranks("train", "generator", TINY, *overrides(tiny_sd, shards, tmp_path),
                                    "model.train_text_encoder=true", "train.batch_size=2",
                                    "train.grad_accum=2")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "tiny-sd-lora" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["global_batch"] == 8
    assert summary["model_equal_across_ranks"] and summary["ema_equal_across_ranks"]
    assert (tmp_path / "tiny-sd-lora" / "export" / "pytorch_lora_weights.safetensors").is_file()


@pytest.mark.slurm
def test_two_slurm_nodes_train_the_adapters_through_the_sbatch_script(
    slurm: dict[str, str], tiny_sd: Path, shards: Path, tmp_path: Path
) -> None:
    from tests.integration.slurm_jobs import train_on_two_nodes

    train_on_two_nodes(slurm["partition"], tmp_path, [TINY, *overrides(tiny_sd, shards, tmp_path)])
    summary = json.loads((tmp_path / "tiny-sd-lora" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 4
    assert summary["model_equal_across_ranks"] and summary["ema_equal_across_ranks"]


@pytest.mark.ray
@pytest.mark.usefixtures("joined_ray")
def test_ray_sampling_gives_each_index_its_own_image_and_records_prompts(
    lora_run: Path, tmp_path: Path
) -> None:
    from suite.artifacts.digests import sha256_text
    from suite.generative.base import Conditions, SampleOptions
    from suite.generative.export import load_generator

    out = tmp_path / "sampled"
    proc = synmed("sample", "--checkpoint", str(lora_run), "--per-class", "2", "--shard-size", "3",
                  "--batch-size", "2", "--sampling-steps", "3", "--negative-prompt", "blurry",
                  "--workers", "2", "--out", str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert verify_shard_set(out).count == 6
    data = ShardDataset(out)
    labels = data.labels.tolist()
    prompts = data.read_column("prompts").tolist()
    meta = [json.loads(m) for m in data.read_column("metadata")]
    assert labels == [0, 1, 2, 0, 1, 2]
    assert prompts == [f"a medical image of {NAMES[c]}" for c in labels]
    model, _ = load_generator(lora_run)
    assert {m["adapter_sha256"] for m in meta} == {model.trained_digest()}
    assert [m["prompt_sha256"] for m in meta] == [sha256_text(p) for p in prompts]
    # every index is the model's own image for (seed 0, index), whichever of the two actors and
    # whatever batch made it: here all six in one in-process batch
    options = SampleOptions(sampler="ddim", steps=3, guidance_scale=3.0, negative_prompt="blurry")
    own = model.sample(range(6), 0, Conditions(labels=np.array(labels)), options)
    assert [img.tobytes() for img in own.images] == [
        data[i]["image"].numpy().tobytes() for i in range(6)
    ]
    summary = json.loads((out / "sample_summary.json").read_text())
    assert len(summary["actors"]) == 2 and summary["negative_prompt"] == "blurry"


def test_two_gloo_ranks_train_a_controlnet_in_sync(tiny_sd: Path, tmp_path: Path) -> None:
    from suite.data.edges import write_edge_set
    from tests.unit.data.helpers import make_shard_set

    shards = make_shard_set(tmp_path / "s", n=8, classes=("a", "b"), size=16, masks=True)
    write_edge_set(shards, tmp_path / "edges", progress=False)
    proc = synmed_on_two_gloo_ranks(
        "train", "generator", str(REPO / "configs/generator/tiny_controlnet.yaml"),
        f"model.base={tiny_sd}", f"data.shards={shards}", "data.split=null",
        f"model.hints={tmp_path / 'edges'}", f"run.out_dir={tmp_path}", "train.batch_size=2",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "tiny-controlnet" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["global_batch"] == 4
    assert summary["model_equal_across_ranks"] and summary["ema_equal_across_ranks"]
    assert (tmp_path / "tiny-controlnet" / "export" / "controlnet" / "config.json").is_file()
