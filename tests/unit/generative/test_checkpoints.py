"""A saved checkpoint samples as the export of that step would: the last step of a finished run
gives the export's bytes, for a GAN (EMA of G only), a DDPM (EMA of the whole UNet) and SD LoRA
(adapters and their EMA only, over a frozen base). Bad input
(a step never saved, a run without checkpoints, a changed checkpoint) is one error, exit 2,
nothing written. Ray runs in tests/integration/test_self_validate_sweep.py."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from suite.artifacts.digests import sha256_file
from suite.cli import main
from suite.errors import DataError
from suite.generative.checkpoints import checkpoint_digest, load_checkpoint_generator, saved_steps
from suite.generative.export import load_generator
from suite.sampling.job import make_plan, sample_rows
from suite.train.run_state import CHECKPOINTS, META, STATE
from tests.unit.data.helpers import make_shard_set
from tests.unit.sampling.test_job import flip_byte

REPO = Path(__file__).resolve().parents[3]
FAMILIES = {
    # (config, sampling steps); ema_decay 0.9: the EMA differs from the online weights
    "acgan": ("tiny_acgan.yaml", 1),
    "ddpm_diffusers": ("tiny_diffusers.yaml", 3),
    # LoRA adapters (and their EMA) over the frozen tiny Stable Diffusion of tests/conftest.py
    "sd_lora": ("tiny_sd_lora.yaml", 2),
}


def train(
    tmp: Path, family: str, config: str | None = None, classes: int = 3, extra: tuple[str, ...] = ()
) -> Path:
    """A finished 2-step run of ``family`` (or of ``config``) with a checkpoint at each step."""
    from suite.generative.train import GeneratorTrainer
    from suite.schema import load_config

    make_shard_set(tmp / "shards", n=12, shard_size=6)
    # relative paths, as in a config run from a project folder: the loader, run from anywhere,
    # reads them from the folder the run was trained in
    with contextlib.chdir(tmp):
        cfg = load_config(REPO / "configs/generator" / (config or FAMILIES[family][0]), [
            "data.shards=shards", "data.split=null", "run.out_dir=runs",
            f"model.num_classes={classes}", "train.max_steps=2", "train.batch_size=4",
            "train.checkpoint_every=1", "train.keep_last=5", "train.sample_every=100",
            "train.ema_decay=0.9", *extra])  # fmt: skip
        return tmp / GeneratorTrainer(cfg).fit()["run"]


@pytest.fixture(scope="module")
def acgan_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train(tmp_path_factory.mktemp("acgan"), "acgan")


def images(model, steps: int) -> np.ndarray:
    plan = make_plan("d", model.class_names, model.num_classes, samplers=model.samplers,
                     num_images=6, per_class=2, class_weights=None, shard_size=6, batch_size=4,
                     sampler=model.samplers[0], steps=steps, seed=3, guidance_scale=1.0)  # fmt: skip
    return sample_rows(model, plan, 0, 6, None, "cpu")["images"]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_last_step_samples_the_bytes_of_the_export(
    family: str, acgan_run: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if family == "acgan":
        run = acgan_run
    else:
        base = (f"model.base={request.getfixturevalue('tiny_sd')}",) if family == "sd_lora" else ()
        run = train(tmp_path, family, extra=base)
    steps = FAMILIES[family][1]
    assert saved_steps(run) == [1, 2]
    last, digest = load_checkpoint_generator(run, 2)
    export, _ = load_generator(run)
    assert last.class_names == export.class_names == ["a", "b", "c"]
    assert images(last, steps).tobytes() == images(export, steps).tobytes()
    # the identity: the digest of the checkpoint's meta.json, the same on every load
    meta = run / CHECKPOINTS / "step-00000002" / META
    assert digest == sha256_file(meta) == checkpoint_digest(run / "export", 2)
    first, first_digest = load_checkpoint_generator(run, 1)
    assert first_digest != digest
    assert images(first, steps).tobytes() != images(last, steps).tobytes()


def sample(run: Path, out: Path, step: str) -> int:
    return main(["sample", "--checkpoint", str(run), "--checkpoint-step", step,
                 "--per-class", "1", "--out", str(out)])  # fmt: skip


def test_a_step_never_saved_is_one_error_listing_the_saved_steps(
    acgan_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert sample(acgan_run, out, "7") == 2
    err = capsys.readouterr().err
    assert f"{acgan_run} has no checkpoint of step 7; saved steps: 1, 2" in err
    assert "--checkpoint-step 2" in err and "Traceback" not in err
    assert not out.exists()


def test_a_run_without_checkpoints_is_one_error(
    acgan_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bare = tmp_path / "bare"
    shutil.copytree(acgan_run, bare, ignore=shutil.ignore_patterns(CHECKPOINTS))
    out = tmp_path / "out"
    assert sample(bare, out, "2") == 2
    err = capsys.readouterr().err
    assert f"{bare} holds no saved checkpoints" in err and "Traceback" not in err
    assert not out.exists() and not (bare / CHECKPOINTS).exists()


def test_a_changed_checkpoint_is_one_error_naming_its_file(
    acgan_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "run"
    shutil.copytree(acgan_run, copy)
    state = copy / CHECKPOINTS / "step-00000001" / STATE
    flip_byte(state)
    before = state.read_bytes()
    out = tmp_path / "out"
    assert sample(copy, out, "1") == 2
    err = capsys.readouterr().err
    assert f"{state} is missing or does not match its sha256" in err
    assert "sample another saved step (1, 2)" in err and "Traceback" not in err
    assert not out.exists() and state.read_bytes() == before


def test_class_names_come_from_the_runs_shard_set_read_where_it_trained(
    acgan_run: Path, tmp_path: Path
) -> None:
    moved = tmp_path / "moved"
    shutil.copytree(acgan_run.parents[1], moved, ignore=shutil.ignore_patterns("export"))
    run = moved / "runs" / acgan_run.name
    assert load_checkpoint_generator(run, 1)[0].class_names == ["a", "b", "c"]
    alone = tmp_path / "alone" / "runs" / acgan_run.name  # neither its shard set nor its export
    shutil.copytree(run, alone)
    with pytest.raises(DataError, match=r"the class names of .* are unknown: its shard set shards"):
        load_checkpoint_generator(alone, 1)
