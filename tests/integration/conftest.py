"""Fixtures of the integration tests: real data and a trained tiny generator, made once; the
session's Ray, joined."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.helpers import ENV, REPO, demo_shards, synmed


@pytest.fixture
def joined_ray(ray_address: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every `synmed` process the test starts with ``helpers.ENV`` joins the session's Ray (through
    ``RAY_ADDRESS``, which every Ray job of the suite honours) instead of starting its own: 10-20 s
    saved per command on 2 cores. For tests whose subject is not Ray's start-up; ``own_ray_env()``
    gives one command a Ray of its own again."""
    monkeypatch.setitem(ENV, "RAY_ADDRESS", ray_address)
    return ray_address


@pytest.fixture(scope="session")
def mni16(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MNI152 slices with tissue masks at 16 px (133 real images, slab splits)."""
    return demo_shards("mni152", tmp_path_factory.mktemp("data") / "mni16", image_size=16)


@pytest.fixture(scope="session")
def tiny_generator(tmp_path_factory: pytest.TempPathFactory, mni16: Path) -> Path:
    """A tiny lucidrains DDPM trained for 3 steps on ``mni16`` (its run folder)."""
    root = tmp_path_factory.mktemp("gen")
    proc = synmed("train", "generator", str(REPO / "configs/generator/tiny_lucidrains.yaml"),
                  f"data.shards={mni16}", f"run.out_dir={root}", "train.max_steps=3")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return root / "tiny-lucidrains"


# the class prompt of configs/papers/ort-thesis/*dreambooth*.yaml
SD_CLASS_PROMPT = "a chest xray"


@pytest.fixture(scope="session")
def sd_class_images(
    tiny_sd: Path, ray_address: str, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    """(the untrained export, the class images it drew): DreamBooth's first two commands,
    `synmed generator init` and `synmed sample --prompt`, on the tiny SD at 16 px, 1 channel, in
    this process (so on the session's Ray, which ``ray_address`` started here)."""
    from suite.cli import main

    root = tmp_path_factory.mktemp("sd-class")
    recipe = REPO / "configs/papers/ort-thesis/sd15_dreambooth.yaml"
    tiny = [f"model.base={tiny_sd}", "model.image_size=16", "model.channels=1"]
    assert main(["generator", "init", str(recipe), *tiny, "--out", str(root / "init")]) == 0
    argv = ["sample", "--checkpoint", str(root / "init"), "--prompt", SD_CLASS_PROMPT,
            "--num-images", "4", "--shard-size", "2", "--batch-size", "2", "--sampling-steps",
            "2", "--out", str(root / "class")]  # fmt: skip
    assert main(argv) == 0
    return root / "init", root / "class"
