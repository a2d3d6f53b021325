"""The two small SSL recipes are one comparison: seed 000's DINO and seed 001's SimCLR on the same
data, generator, samples, pretraining budget and evaluation (docs/ssl.md, "A protocol in which
pretraining pays"), so they may differ only in the method and its optimizer."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]
DINO = REPO / "configs" / "papers" / "i-synmed" / "small.yaml"
SIMCLR = REPO / "configs" / "papers" / "medcls" / "small_simclr.yaml"
# what a method brings with it (DINO needs SGD and more, smaller steps: docs/ssl.md)
METHOD_KEYS = ("method", "optimizer", "lr", "min_lr", "weight_decay", "weight_decay_end")


def test_the_ssl_recipes_differ_only_in_their_method() -> None:
    dino, simclr = (yaml.safe_load(p.read_text()) for p in (DINO, SIMCLR))
    for key in ("stages", "ingest", "generator", "sample", "eval_generator", "eval_classify"):
        assert dino[key] == simclr[key], key
    for cfg in (dino, simclr):
        del cfg["pretrain"]["train"]["batch_size"]
        for key in METHOD_KEYS:
            cfg["pretrain"]["pretrain"].pop(key, None)
    assert dino["pretrain"] == simclr["pretrain"]
    assert dino["eval_classify"]["backbones"] == ["none", *dino["pretrain"]["variants"]]
