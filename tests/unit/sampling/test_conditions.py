"""Conditioned sampling plans: rows from a conditioning set, K outputs each, paired by
``source_index``; the plan's digest and old job folders. The mask-reading family here is a test
double (the real mask-conditioned families come with their own tests); the class-conditional DDPM
is run for real on Ray in tests/integration/test_sample_ray.py."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from suite.errors import ConfigError, ShardError
from suite.generative.base import Conditions, Generator, SampleOptions, SampleOutput
from suite.sampling.job import (
    ConditionReader,
    condition_source,
    make_plan,
    prepare_output,
    sample_rows,
)
from tests.unit.data.helpers import make_shard_set


class MaskEcho(Generator):
    """Paints each mask's foreground at 200 plus the attempt-0 noise seed's low byte: enough to
    see which row and index made which image."""

    samplers = ("echo",)
    conditions = ("masks",)

    def __init__(self) -> None:
        super().__init__()
        self.config = None
        self.net = nn.Linear(1, 1)

    def trainable_modules(self):
        return {"net": self.net}

    def configure_optimizers(self, train_cfg):
        return {}

    def loss(self, batch, objective):
        return torch.zeros(())

    def sample(
        self, indices: Sequence[int], seed: int, conditions: Conditions | None,
        options: SampleOptions, device="cpu",
    ) -> SampleOutput:  # fmt: skip
        assert conditions is not None and conditions.masks is not None
        images = conditions.masks.astype(np.uint8) * 200
        images += np.array(indices, dtype=np.uint8)[:, None, None, None] % 50
        meta = [{"attempt": options.attempt, "row": int(r)} for r in conditions.source_index]
        return SampleOutput(images=images, masks=conditions.masks, metadata=meta)

    def export_files(self, directory: Path) -> None:
        raise NotImplementedError

    @classmethod
    def load_exported(cls, directory: Path, config):
        raise NotImplementedError


def plan_for(model: Generator, source, **kw):
    args = dict(num_images=None, per_class=None, class_weights=None, shard_size=4, batch_size=3,
                sampler="echo", steps=1, seed=0, guidance_scale=1.0)  # fmt: skip
    args.update(kw)
    return make_plan(
        "d", [], 0, samplers=model.samplers, conditions=source, per_condition=2, **args
    )


def test_rows_come_in_pairs_with_their_source(tmp_path: Path) -> None:
    masked = make_shard_set(tmp_path / "masked", n=9, masks=True)
    model = MaskEcho()
    source = condition_source(model, masked, "train")
    assert source.kinds == ("masks",) and source.rows == 3  # rows 0, 3, 6 are train
    plan = plan_for(model, source)
    assert plan.num_images == 6 and plan.conditioned and not plan.conditional
    reader = ConditionReader(masked, plan)
    arrays = sample_rows(model, plan, 0, 6, reader, "cpu")
    assert arrays["index"].tolist() == list(range(6))
    assert arrays["source_index"].tolist() == [0, 0, 3, 3, 6, 6]
    assert json.loads(arrays["metadata"][2]) == {"attempt": 0, "row": 3}
    for row, source_index in enumerate(arrays["source_index"]):
        want = reader.data[int(source_index) // 3]["mask"].numpy()
        assert np.array_equal(arrays["masks"][row], want)  # the pair stays paired
        assert np.array_equal(arrays["images"][row] >= 200, want.astype(bool))
    # another range starts at its own rows: a shard boundary changes nothing
    tail = sample_rows(model, plan, 3, 6, reader, "cpu")
    assert np.array_equal(tail["images"], arrays["images"][3:])


def test_conditioning_errors_name_the_fix(tmp_path: Path) -> None:
    model = MaskEcho()
    plain = make_shard_set(tmp_path / "plain", n=6)
    with pytest.raises(ShardError, match="none of the conditions this generator reads"):
        condition_source(model, plain, "train")
    masked = make_shard_set(tmp_path / "masked", n=6, masks=True)
    source = condition_source(model, masked, "train")
    with pytest.raises(ConfigError, match="--per-condition 2 x 2 conditioning rows"):
        plan_for(model, source, num_images=5)
    with pytest.raises(ConfigError, match="cannot be combined"):
        plan_for(model, source, per_class=2)
    with pytest.raises(ConfigError, match="not one this generator declares"):
        plan_for(model, source, sampler="ddim")
    with pytest.raises(ConfigError, match="needs --conditions"):
        make_plan("d", [], 0, samplers=("echo",), per_condition=2, num_images=4, per_class=None,
                  class_weights=None, shard_size=4, batch_size=2, sampler="echo", steps=1,
                  seed=0, guidance_scale=1.0)  # fmt: skip


def test_unconditioned_plans_keep_their_digest_and_old_folders_resume(tmp_path: Path) -> None:
    plan = make_plan("d", [], 0, samplers=("ddim",), num_images=8, per_class=None,
                     class_weights=None, shard_size=4, batch_size=2, sampler="ddim", steps=4,
                     seed=0, guidance_scale=1.0)  # fmt: skip
    # the digest of this plan before conditioning existed (commit acd922b)
    old = {"checkpoint_digest": "d", "num_images": 8, "shard_size": 4, "batch_size": 2,
           "sampler": "ddim", "steps": 4, "seed": 0, "guidance_scale": 1.0, "class_names": [],
           "per_class": None, "class_weights": None}  # fmt: skip
    import hashlib

    assert plan.digest == hashlib.sha256(json.dumps(old, sort_keys=True).encode()).hexdigest()
    out = tmp_path / "old-job"
    out.mkdir()
    (out / "job.json").write_text(json.dumps({"plan": old, "plan_digest": plan.digest}))
    assert len(prepare_output(out, plan, "ckpt").todo) == 2  # accepted: both shards still to write


def test_the_conditioning_reader_refuses_a_changed_shard(tmp_path: Path) -> None:
    masked = make_shard_set(tmp_path / "masked", n=9, masks=True)
    model = MaskEcho()
    plan = plan_for(model, condition_source(model, masked, "train"))
    shard = masked / "shard-00001.h5"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(ShardError, match="sha256 does not match") as err:
        ConditionReader(masked, plan)  # what each sampling actor opens, on a resume too
    assert str(shard) in err.value.what
    with pytest.raises(ShardError, match="sha256"):
        condition_source(model, masked, "train")  # the driver's check before a (re)run
