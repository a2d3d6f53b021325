"""MONAI's UNet and AttentionUnet as `model.encoder` choices: shapes, the size rule, a tiny run."""

from __future__ import annotations

import json
from pathlib import Path

import monai
import pytest
import torch
from monai.networks.nets import AttentionUnet, UNet

from suite.errors import ConfigError
from suite.evaluation.segment.config import load_segment_config
from suite.evaluation.segment.monai_nets import monai_network
from suite.evaluation.segment.run import evaluate_segmentation
from tests.unit.data.helpers import make_shard_set

KINDS = ["monai_unet", "monai_attention_unet"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("size", "channels"), [(16, [4, 8, 16]), (32, [4, 8, 16, 32])])
def test_logits_at_the_input_size(kind: str, size: int, channels: list[int]) -> None:
    net = monai_network(kind, 1, 3, channels, (size, size)).eval()  # type: ignore[arg-type]
    assert isinstance(net, UNet if kind == "monai_unet" else AttentionUnet)
    with torch.no_grad():
        out = net(torch.randn(2, 1, size, size))
    assert out.shape == (2, 3, size, size)


def test_a_size_the_levels_cannot_halve_is_one_error_with_a_fix_that_fits() -> None:
    with pytest.raises(ConfigError, match="divisible by 8, but the images are 20x20") as info:
        monai_network("monai_unet", 1, 2, [16, 32, 64, 128], (20, 20))
    assert "model.channels=[16, 32, 64, 128]" in info.value.what
    assert "model.channels=[16, 32, 64]" in str(info.value.fix)  # 20 = 4 x 5: 3 levels fit
    monai_network("monai_unet", 1, 2, [16, 32, 64], (20, 20))  # the fix works
    with pytest.raises(ConfigError, match="27x27") as odd:
        monai_network("monai_attention_unet", 1, 2, [4, 8], (27, 27))
    assert "--image-size 28" in str(odd.value.fix) and "model.encoder=conv" in str(odd.value.fix)


@pytest.mark.parametrize("kind", KINDS)
def test_a_tiny_run_trains_and_records_the_network(tmp_path: Path, kind: str) -> None:
    real = make_shard_set(tmp_path / "real", n=12, masks=True, size=16)
    cfg = load_segment_config(None, [f"data.shards={real}", f"model.encoder={kind}",
                                     "model.channels=[4, 8, 16]", "train.epochs=2",
                                     "train.seeds=[0]", "train.batch_size=4",
                                     "report.figure_cases=0"])  # fmt: skip
    result = evaluate_segmentation(cfg, tmp_path / "out")
    enc = result["context"]["encoder"]
    assert enc["encoder"] == kind and enc["channels"] == [4, 8, 16]
    assert result["context"]["monai_version"] == monai.__version__
    assert (
        enc["network"]
        == f"monai.networks.nets.{'UNet' if kind == 'monai_unet' else 'AttentionUnet'}"
    )
    history = json.loads((tmp_path / "out" / "history.json").read_text())["0"]
    assert len(history) == 2 and all(h["loss"] > 0 for h in history)
    assert 0.0 <= result["metrics"]["dice"]["mean"] <= 1.0


def test_a_size_mismatch_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    real = make_shard_set(tmp_path / "real", n=9, masks=True, size=20)
    cfg = load_segment_config(None, [f"data.shards={real}", "model.encoder=monai_unet",
                                     "train.epochs=1"])  # fmt: skip
    with pytest.raises(ConfigError, match="20x20"):
        evaluate_segmentation(cfg, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_cli_prints_the_size_error_with_its_fix_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from suite.cli import main

    real = make_shard_set(tmp_path / "real", n=9, masks=True, size=20)
    config = Path(__file__).resolve().parents[3] / "configs/evaluate/segment_mni152.yaml"
    out = tmp_path / "out"
    argv = ["evaluate", "segment", str(config), f"data.shards={real}",
            "model.encoder=monai_attention_unet", "--out", str(out)]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "model.encoder=monai_attention_unet" in err and "20x20" in err
    assert "model.channels=[16, 32, 64]" in err and "Traceback" not in err
    assert not out.exists()
