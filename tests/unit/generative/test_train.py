"""`synmed train generator` on bad input: one error naming the thing, exit 2, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from suite.cli import main

REPO = Path(__file__).resolve().parents[3]
DIFF = str(REPO / "configs/generator/tiny_diffusers.yaml")


def test_shards_without_manifest_is_one_shard_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"")
    out = tmp_path / "runs"
    assert main(["train", "generator", DIFF, f"data.shards={folder}", f"run.out_dir={out}"]) == 2
    err = capsys.readouterr().err
    assert f"{folder} is not a shard set (no manifest.json" in err
    assert "synmed data ingest" in err and "Traceback" not in err
    assert not out.exists() and [p.name for p in folder.iterdir()] == ["a.png"]


@pytest.mark.parametrize(
    ("config", "extra"),
    [("tiny_dcgan.yaml", ["model.mode=per_class"]), ("tiny_acgan.yaml", [])],
    ids=["dcgan-per-class", "acgan"],
)
def test_a_gan_trains_under_bf16_autocast_on_the_cpu(
    tmp_path: Path, config: str, extra: list[str]
) -> None:
    """The GAN step runs its D and G objectives inside the loop's autocast, as the DDPMs do:
    bf16 activations in both networks, float32 weights and finite losses. (fp16 and its grad
    scaler need a GPU: accelerate makes no scaler on the CPU.)"""
    import json

    import torch

    from suite.generative.train import GeneratorTrainer
    from suite.schema import load_config
    from tests.unit.data.helpers import make_shard_set

    shards = make_shard_set(tmp_path / "s", n=12, shard_size=6)
    cfg = load_config(REPO / "configs/generator" / config, [
        f"data.shards={shards}", "data.split=null", f"run.out_dir={tmp_path}", "model.num_classes=3",
        "train.max_steps=3", "train.batch_size=4", "train.mixed_precision=bf16", *extra])  # fmt: skip
    trainer = GeneratorTrainer(cfg)
    seen: dict[str, set[torch.dtype]] = {"G": set(), "D": set()}
    for name in seen:
        conv = next(m for m in getattr(trainer.generator, name).modules()
                    if isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d))  # fmt: skip
        # training forwards only: previews and the export sample in eval mode, in float32
        conv.register_forward_hook(
            lambda m, i, out, name=name: seen[name].add(out.dtype) if m.training else None
        )
    summary = trainer.fit()
    assert seen == {"G": {torch.bfloat16}, "D": {torch.bfloat16}}
    assert all(p.dtype == torch.float32 for p in trainer.generator.parameters())
    records = [
        json.loads(line)
        for line in (Path(summary["run"]) / "metrics.jsonl").read_text().splitlines()
    ]
    keys = ("loss_discriminator", "loss_generator", "loss_d_real", "loss_d_fake")
    assert [r["step"] for r in records] == [1, 2, 3]
    assert all(torch.isfinite(torch.tensor([r[k] for k in keys])).all() for r in records)
