"""Every Stable Diffusion recipe under configs/papers/ (model.kind sd_lora or sd_dreambooth)
trains through `synmed train generator` on the tiny SD of `synmed models tiny-sd`, shrunk by
dotted overrides to 16 px, 1 channel, 2 steps; its export loads and samples.

Recipes are found by glob, so a new one is covered without touching this file. An SD 2.x recipe
runs on a copy of the tiny SD whose scheduler predicts v, as SD 2.1's does. DreamBooth recipes
take the class images the session's tiny base drew (``sd_class_images``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from suite.cli import main
from tests.integration.helpers import REPO

SD_KINDS = ("sd_lora", "sd_dreambooth")
SD_RECIPES = sorted(
    p
    for p in REPO.glob("configs/papers/**/*.yaml")
    if ((yaml.safe_load(p.read_text()) or {}).get("model") or {}).get("kind") in SD_KINDS
)


def kind(path: Path) -> str:
    return yaml.safe_load(path.read_text())["model"]["kind"]


# DreamBooth's class images are sampled on the session's Ray (once); the LoRA recipes need no Ray
PARAMS = [
    pytest.param(p, marks=[pytest.mark.ray] if kind(p) == "sd_dreambooth" else [])
    for p in SD_RECIPES
]
PATHMNIST = ("adipose", "background", "debris", "lymphocytes", "mucus", "smooth muscle",
             "normal colon mucosa", "cancer-associated stroma",
             "colorectal adenocarcinoma epithelium")  # fmt: skip


def recipe_id(path: Path) -> str:
    return str(path.relative_to(REPO / "configs/papers"))


@pytest.fixture(scope="module")
def tiny_sd_v(tiny_sd: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny SD with SD 2.1's v-prediction scheduler."""
    out = tmp_path_factory.mktemp("tiny-sd-v") / "sd"
    shutil.copytree(tiny_sd, out)
    config = out / "scheduler" / "scheduler_config.json"
    config.write_text(
        json.dumps({**json.loads(config.read_text()), "prediction_type": "v_prediction"})
    )
    return out


def shrink(
    cfg: dict[str, Any], base: Path, shards: Path, out: Path, class_images: Path | None
) -> list[str]:
    """The recipe's model and loop at the tiny SD's scale: sizes, steps and batches only."""
    o = [f"model.base={base}", "model.image_size=16", "model.channels=1", f"data.shards={shards}",
         "data.split=null", f"run.out_dir={out}", "train.max_steps=2", "train.batch_size=2",
         "train.num_workers=0", "train.checkpoint_every=2", "train.sample_every=2",
         "train.sample_images=2", "train.sample_steps=2", "train.log_every=1"]  # fmt: skip
    if cfg["train"].get("grad_accum", 1) > 1:
        o.append("train.grad_accum=2")
    if cfg["model"]["kind"] == "sd_dreambooth":
        assert class_images is not None
        o += [f"model.class_images={class_images}", "model.min_class_images=4"]
    return o


@pytest.mark.parametrize("recipe", PARAMS, ids=recipe_id)
def test_sd_recipe_trains_on_the_tiny_sd_and_its_export_samples(
    recipe: Path,
    tiny_sd: Path,
    tiny_sd_v: Path,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    from safetensors import safe_open

    from suite.generative.base import Conditions, SampleOptions
    from suite.generative.export import load_generator
    from tests.unit.data.helpers import make_shard_set

    cfg = yaml.safe_load(recipe.read_text())
    model_cfg = cfg["model"]
    classes = PATHMNIST[: model_cfg["num_classes"]] if model_cfg["num_classes"] else ("xray",)
    shards = make_shard_set(tmp_path / "shards", n=2 * len(classes), classes=classes, size=16)
    base = tiny_sd_v if "stable-diffusion-2" in model_cfg["base"] else tiny_sd
    class_images = (
        request.getfixturevalue("sd_class_images")[1]
        if model_cfg["kind"] == "sd_dreambooth"
        else None
    )
    argv = ["train", "generator", str(recipe), *shrink(cfg, base, shards, tmp_path, class_images)]
    assert main(argv) == 0
    export = tmp_path / cfg["run"]["name"] / "export"
    with safe_open(str(export / "pytorch_lora_weights.safetensors"), "pt") as f:
        parts = {key.split(".")[0] for key in f.keys()}  # noqa: SIM118 (safe_open is no dict)
    assert parts == ({"unet", "text_encoder"} if model_cfg.get("train_text_encoder") else {"unet"})
    if cfg["train"]["ema_decay"] == 0:  # no EMA, as the diffusers scripts: it is the adapters
        import torch

        from suite.train import run_state

        run = tmp_path / cfg["run"]["name"]
        state, _ = run_state.load_state(run_state.latest_checkpoint(run), rank=0)
        assert state["model"] and all(
            torch.equal(state["ema"][f"ema_model.{k}"], v) for k, v in state["model"].items()
        )
    model, _ = load_generator(export)
    # the recipe's own settings, past the overrides
    for key in ("lora_rank", "lora_alpha", "noise_offset", "prompt", "guidance_scale"):
        if key in model_cfg:
            assert getattr(model.config, key) == model_cfg[key], key
    assert model.noise_scheduler.config.prediction_type == (
        "v_prediction" if base == tiny_sd_v else "epsilon"
    )
    labels = np.arange(len(classes)) if model_cfg["num_classes"] else None
    out = model.sample(list(range(len(classes))), 0, Conditions(labels=labels) if labels is not None else None,
                       SampleOptions(sampler="ddim", steps=2, guidance_scale=model_cfg["guidance_scale"]))  # fmt: skip
    assert out.images.shape == (len(classes), 1, 16, 16)
    if "prompt_template" in model_cfg:
        want = [model_cfg["prompt_template"].format(class_name=c) for c in classes]
    else:
        want = [model_cfg["prompt"]]
    assert out.prompts == want


def test_the_sd_recipes_are_all_found() -> None:
    assert {recipe_id(p) for p in SD_RECIPES} >= {
        "aiding-diagnosis/sd15_lora_pathmnist.yaml",
        "ort-thesis/sd15_lora.yaml",
        "ort-thesis/sd15_dreambooth.yaml",
        "ort-thesis/sd21_dreambooth_lora.yaml",
    }
