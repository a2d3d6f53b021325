"""Sampling resume trusts only what it verified; a failed shard write is one message naming the
file; bad counts are refused before anything is written. Ray itself runs in
tests/integration/test_sample_ray.py; here the plan, the folder and the actor's code run in-process."""

from __future__ import annotations

import errno
import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path

import h5py
import numpy as np
import pytest

from suite.artifacts.files import OutOfSpace
from suite.cli import main
from suite.data import shards
from suite.data.shards import MANIFEST, shard_name, write_manifest
from suite.errors import DataError, ShardError
from suite.launch.ray_runtime import raise_carried
from suite.sampling.job import (
    RECORDS_DIR,
    SamplingPlan,
    ShardSampler,
    make_plan,
    prepare_output,
    record_path,
    shard_attrs,
    write_sampled_shard,
)
from tests.unit.data.helpers import pattern


def tiny_plan() -> SamplingPlan:
    return make_plan("d", [], 0, samplers=("echo",), num_images=8, per_class=None,
                     class_weights=None, shard_size=4, batch_size=2, sampler="echo", steps=1,
                     seed=0, guidance_scale=1.0)  # fmt: skip


def rows(start: int, stop: int) -> dict[str, np.ndarray]:
    return {
        "images": np.stack([pattern(i) for i in range(start, stop)]),
        "index": np.arange(start, stop, dtype=np.int64),
    }


def sampled(out: Path, plan: SamplingPlan) -> Path:
    """A folder as the workers leave it before the driver writes the manifest."""
    assert prepare_output(out, plan, "ckpt").todo == plan.shards()
    for number, start, stop in plan.shards():
        write_sampled_shard(out, number, rows(start, stop), shard_attrs(plan, "ckpt"), plan.digest)
    return out


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def rewrite_valid(path: Path) -> None:
    """The same shard with one pixel changed: a valid file with the right job digest and count,
    which the old resume check accepted and re-hashed into the manifest."""
    with h5py.File(path, "r+") as h5:
        images = h5["images"][:]
        images[0, 0, 0, 0] ^= 0xFF
        h5["images"][...] = images


def test_resume_keeps_only_shards_that_match_their_writers_record(tmp_path: Path) -> None:
    plan = tiny_plan()
    out = sampled(tmp_path / "s", plan)
    intact = prepare_output(out, plan, "ckpt")
    assert (
        intact.todo == []
        and intact.redo == []
        and sorted(intact.kept)
        == [
            "shard-00000.h5",
            "shard-00001.h5",
        ]
    )
    rewrite_valid(out / shard_name(1))
    resume = prepare_output(out, plan, "ckpt")
    assert resume.todo == [(1, 4, 8)] and list(resume.kept) == ["shard-00000.h5"]
    (line,) = resume.redo
    assert str(out / "shard-00001.h5") in line and "differs from the sha256" in line
    # a shard whose worker died before its record was written is sampled again too
    record_path(out, 0).unlink()
    resume = prepare_output(out, plan, "ckpt")
    assert [t[0] for t in resume.todo] == [0, 1] and "has no record" in resume.redo[0]


def test_a_complete_set_is_verified_against_its_manifest(tmp_path: Path) -> None:
    plan = tiny_plan()
    out = sampled(tmp_path / "s", plan)
    kept = prepare_output(out, plan, "ckpt").kept
    write_manifest(out, list(kept.values()), shard_attrs(plan, "ckpt"))
    shutil.rmtree(out / RECORDS_DIR)  # as run_sampling leaves a finished set
    assert prepare_output(out, plan, "ckpt").todo == []
    flip_byte(out / shard_name(0))
    (out / shard_name(1)).unlink()
    resume = prepare_output(out, plan, "ckpt")
    assert [t[0] for t in resume.todo] == [0, 1]
    assert "differs from the sha256" in resume.redo[0] and "shard-00000.h5" in resume.redo[0]
    assert "listed in the manifest but missing" in resume.redo[1]
    assert (out / MANIFEST).is_file()  # replaced only once every shard is whole again


def test_full_disk_while_writing_a_shard_is_one_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = tiny_plan()
    out = tmp_path / "s"
    prepare_output(out, plan, "ckpt")

    def full_disk(fd: int) -> None:  # where a full disk (e.g. on NFS) shows up last
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OutOfSpace, match="no space left") as err:
        write_sampled_shard(out, 1, rows(4, 8), shard_attrs(plan, "ckpt"), plan.digest)
    assert str(out / "shard-00001.h5") in err.value.what and "free space" in err.value.fix
    assert not list(out.glob("*.tmp")) and not record_path(out, 1).exists()


class Echo:
    """Stands in for a loaded generator: the actor's code around it is what is tested."""

    def to(self, device):
        return self

    def eval(self):
        return self

    def sample(self, indices, seed, conditions, options, device):
        from suite.generative.base import SampleOutput

        return SampleOutput(images=np.stack([pattern(i) for i in indices]))


def test_the_actor_returns_a_full_disk_as_one_error_the_driver_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import suite.generative.export as export

    plan = tiny_plan()
    out = tmp_path / "s"
    prepare_output(out, plan, "ckpt")
    monkeypatch.setattr(export, "load_generator", lambda path: (Echo(), "d"))

    def full_disk(path: Path, data: bytes) -> None:
        raise OutOfSpace(path, errno.EFBIG, "raise the file-size limit")

    actor = ShardSampler("ckpt", json.loads(json.dumps(asdict(plan))), str(out))
    batch = {"shard": np.array([0, 1]), "start": np.array([0, 4]), "stop": np.array([4, 8])}
    first = actor(batch)
    assert all(first["error"] == "") and len(json.loads(first["record"][1])["sha256"]) == 64
    monkeypatch.setattr(shards, "write_bytes_atomic", full_disk)
    failed = actor(batch)
    assert list(failed["record"]) == ["", ""]
    with pytest.raises(DataError, match=r"writing .*shard-00000\.h5 failed: file too large") as err:
        raise_carried(failed["error"][0], also=1)
    assert "(and 1 more shard(s) failed)" in err.value.what and err.value.fix


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--workers", "0"), ("--workers", "-2"), ("--batch-size", "0"), ("--shard-size", "0"),
     ("--num-images", "0"), ("--sampling-steps", "0"), ("--per-class", "0")],
)  # fmt: skip
def test_counts_below_one_are_refused_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str
) -> None:
    out = tmp_path / "out"
    args = {"--checkpoint": str(tmp_path / "no-run"), "--num-images": "8", flag: value}
    argv = ["sample", *[x for kv in args.items() for x in kv], "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"error: {flag} is {value}, it must be at least 1" in err and "fix:" in err
    assert not out.exists()


@pytest.mark.parametrize("where", ["--conditions", "--checkpoint"])
def test_out_inside_an_input_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    from tests.unit.data.helpers import make_shard_set

    conditions = make_shard_set(tmp_path / "cond", n=6)
    run = tmp_path / "run"
    run.mkdir()
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    out = (conditions if where == "--conditions" else run) / "samples"
    argv = ["sample", "--checkpoint", str(run), "--conditions", str(conditions), "--out", str(out)]
    assert main(argv) == 2
    given = conditions if where == "--conditions" else run
    assert f"error: output {out} lies inside the input {given}" in capsys.readouterr().err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_a_checkpoint_step_is_recorded_and_an_exports_plan_keeps_its_digest(
    tmp_path: Path,
) -> None:
    from dataclasses import replace

    plan = tiny_plan()
    # the digest of this plan before checkpoint steps existed: folders sampled then still resume
    assert plan.digest == "e9fcbe64633e40fa725f3cc0e786a8820af77cc894c59aa390d781263d7d4de5"
    stepped = replace(plan, checkpoint_step=4)
    assert stepped.digest != plan.digest
    assert "checkpoint_step" not in shard_attrs(plan, "run")
    assert shard_attrs(stepped, "run")["checkpoint_step"] == 4
    out = sampled(tmp_path / "s", stepped)
    assert json.loads((out / "job.json").read_text())["plan"]["checkpoint_step"] == 4
    with pytest.raises(ShardError, match=r"checkpoint_step 4 != None"):
        prepare_output(out, plan, "run")  # the export's job is another job
