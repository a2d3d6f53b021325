"""Session fixtures of the integration tests: real data and a trained tiny generator, made once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.helpers import REPO, demo_shards, synmed


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
