"""HED from a local weights file: loads the published key layout, runs, and refuses bad files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from suite.data.dataset import ShardDataset
from suite.data.edges import mask_boundary, write_edge_set
from suite.data.hed import HED, hed_edges, load_hed
from suite.errors import ConfigError
from tests.unit.data.helpers import make_square_mask_set


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random weights under the published file's key names ("moduleVggOne.0.weight" ...)."""
    torch.manual_seed(0)
    state = {k.replace("net", "module"): v.half() for k, v in HED().state_dict().items()}
    path = tmp_path_factory.mktemp("hed") / "network-bsds500.pth"
    torch.save(state, path)
    return path


def test_loads_the_published_layout_and_runs(weights: Path) -> None:
    model = load_hed(weights, device="cpu")
    assert next(iter(torch.load(weights, weights_only=True))).startswith("moduleVgg")
    gray = np.random.default_rng(0).integers(0, 256, (2, 1, 16, 16), dtype=np.uint8)
    out = hed_edges(model, gray)
    assert out.shape == (2, 16, 16) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    # gray is fed as three equal channels; RGB is flipped to the network's BGR
    np.testing.assert_allclose(hed_edges(model, np.repeat(gray, 3, axis=1)), out, atol=1e-6)
    rgb = np.concatenate([gray[:1], np.zeros_like(gray[:1]), gray[1:]], axis=1)
    with torch.no_grad():
        bgr = torch.from_numpy(rgb[:, ::-1].copy()).float()
        np.testing.assert_allclose(hed_edges(model, rgb), model(bgr)[:, 0].numpy(), atol=1e-6)


def test_missing_and_wrong_weights_are_one_error(tmp_path: Path, weights: Path) -> None:
    with pytest.raises(ConfigError, match="HED weights .*nothing.pth do not exist") as err:
        load_hed(tmp_path / "nothing.pth")
    assert "--hed" in err.value.fix
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ConfigError, match="other.pth is not the BSDS500 HED network"):
        load_hed(tmp_path / "other.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(ConfigError, match="junk.pth are not a readable torch file"):
        load_hed(tmp_path / "junk.pth")


def test_edge_set_with_hed(tmp_path: Path, weights: Path) -> None:
    src = make_square_mask_set(tmp_path / "src", n=3)
    manifest = write_edge_set(src, tmp_path / "edges", hed=weights, progress=False)
    assert manifest.attrs["conditioning"]["hed"]["weights"] == str(weights.resolve())
    assert "canny" not in manifest.attrs["conditioning"]
    real, edges = ShardDataset(src), ShardDataset(tmp_path / "edges")
    model = load_hed(weights, device="cpu")
    for i in range(len(real)):
        boundary = mask_boundary(real[i]["mask"][0].numpy())
        hed = hed_edges(model, real[i]["image"].numpy()[None])[0]
        expected = np.rint(np.clip(boundary + hed, 0, 1) * 255).astype(np.uint8)
        np.testing.assert_array_equal(edges[i]["image"][0].numpy(), expected)


def test_cli_missing_hed_writes_nothing(tmp_path: Path) -> None:
    src = make_square_mask_set(tmp_path / "src", n=2)
    result = subprocess.run(
        [sys.executable, "-m", "suite", "data", "edges", str(src), "--out", str(tmp_path / "e"),
         "--hed", str(tmp_path / "absent.pth"), "--quiet"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2 and "absent.pth do not exist" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "e").exists()
