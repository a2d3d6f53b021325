"""benchmarks/recipe_cost.py counts FLOPs on the meta device: its count of a SimCLR image must be
two views through a ResNet-18, forward and backward, as counted on real tensors."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[2]


def recipe_cost():
    spec = importlib.util.spec_from_file_location(
        "recipe_cost", REPO / "benchmarks" / "recipe_cost.py"
    )
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules["recipe_cost"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_a_simclr_image_is_two_resnet18_views_forward_and_backward() -> None:
    from torchvision.models import resnet18

    rc = recipe_cost()
    (simclr,) = [s for s in rc.stages() if s.stage.startswith("SimCLR")]
    per_image = simclr.per_unit()
    net = resnet18(num_classes=10)
    counter = FlopCounterMode(display=False)
    with counter:
        net(torch.zeros(2, 3, 224, 224)).sum().backward()  # two views of one image
    # the projection head (512 -> 256 -> 256) and the loss add well under 1 %
    assert per_image == pytest.approx(counter.get_total_flops(), rel=0.01)


def test_every_stage_is_counted_and_printed(capsys: pytest.CaptureFixture[str]) -> None:
    rc = recipe_cost()
    assert rc.main(["--only", "004", "--gpus", "1"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 004")]
    assert len(rows) == 2
    for row in rows:
        flops = float(row.split("|")[3])
        assert flops > 1e12  # an SD 1.5 step at 512 px is teraflops
