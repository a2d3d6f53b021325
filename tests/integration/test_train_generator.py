"""`synmed train generator` end to end on real data (MNI152 slices, Fashion-MNIST), as a user runs it."""

from __future__ import annotations

import json
import math
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from suite.artifacts.exports import EXPORT_META
from suite.data.ingest.options import IngestOptions
from suite.data.ingest.pipeline import ingest
from suite.generative.export import load_generator
from suite.train import run_state
from tests.conftest import need
from tests.integration.helpers import (
    ENV,
    demo_shards,
    synmed,
    synmed_here,
    synmed_on_two_gloo_ranks,
)
from tests.unit.data.helpers import make_class_folders

REPO = Path(__file__).resolve().parents[2]
LUCID = str(REPO / "configs/generator/tiny_lucidrains.yaml")
DIFF = str(REPO / "configs/generator/tiny_diffusers.yaml")


@pytest.fixture(scope="module")
def fashion16(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not Path("/usr/share/datasets/fashion-mnist").is_dir():
        need("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist, Debian)")
    return demo_shards(
        "fashion-mnist", tmp_path_factory.mktemp("data") / "fm16", image_size=16, limit=300
    )


def final_state(run_dir: Path) -> dict:
    state, _ = run_state.load_state(run_state.latest_checkpoint(run_dir), rank=0)
    return state


def test_tiny_lucidrains_trains_and_writes_everything(mni16: Path, tmp_path: Path) -> None:
    proc = synmed("train", "generator", LUCID, f"data.shards={mni16}", f"run.out_dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / "tiny-lucidrains"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 6 and summary["world_size"] == 1
    assert [p.name for p in run_state.list_checkpoints(run)] == ["step-00000003", "step-00000006"]
    assert (run / "samples" / "step-00000006.png").is_file() and (run / "loss.png").is_file()
    assert list((run / "tensorboard").rglob("events.out.tfevents.*"))
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert all({"loss", "lr", "images_per_s", "grad_norm"} <= r.keys() for r in records)
    # The export holds the EMA weights (seed 000 sampled the online model), loadable without training code.
    state = final_state(run)
    exported = load_file(run / "export" / "model.safetensors")
    ema = {
        k.removeprefix("ema_model.diffusion."): v
        for k, v in state["ema"].items()
        if k.startswith("ema_model.diffusion.")
    }
    online = {k.removeprefix("diffusion."): v for k, v in state["model"].items()}
    name = next(k for k in exported if k.endswith("weight") and exported[k].ndim == 4)
    assert torch.equal(exported[name], ema[name]) and not torch.equal(exported[name], online[name])
    meta = json.loads((run / "export" / EXPORT_META).read_text())
    assert meta["kind"] == "generator" and meta["family"] == "ddpm_lucidrains"
    provenance = meta["provenance"]
    assert (
        provenance["config_digest"] == summary["config_digest"] and provenance["weights"] == "ema"
    )
    assert provenance["data_manifest_sha256"] == summary["data_digest"]
    model, _ = load_generator(run)
    assert model.sample_preview(2, steps=3, seed=0).shape == (2, 1, 16, 16)


def test_sigkill_between_checkpoints_then_resume_matches(mni16: Path, tmp_path: Path) -> None:
    common = [LUCID, f"data.shards={mni16}", "train.max_steps=8", "train.checkpoint_every=3",
              "train.sample_every=100", "model.dim=16", "train.batch_size=8"]  # fmt: skip
    ref = synmed("train", "generator", *common, f"run.out_dir={tmp_path / 'ref'}")
    assert ref.returncode == 0, ref.stderr

    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "suite", "train", "generator", *common, f"run.out_dir={out}"],
        env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    metrics = out / "tiny-lucidrains" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        lines = metrics.read_text().splitlines() if metrics.exists() else []
        if lines and json.loads(lines[-1])["step"] >= 4:
            proc.send_signal(signal.SIGKILL)  # mid step 5: after checkpoint 3, before checkpoint 6
            break
        time.sleep(0.01)
    assert proc.wait(timeout=30) == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""
    run = out / "tiny-lucidrains"
    assert [p.name for p in run_state.list_checkpoints(run)] == ["step-00000003"]

    resumed = synmed("train", "generator", *common, f"run.out_dir={out}", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["resumed_from"].endswith("step-00000003") and summary["steps"] == 8
    want, got = final_state(tmp_path / "ref" / "tiny-lucidrains"), final_state(run)
    for part in ("model", "ema"):
        assert want[part].keys() == got[part].keys()
        for name, tensor in want[part].items():
            assert torch.equal(got[part][name], tensor), f"{part}.{name}"
    # bit-identical on CPU: every tensor of the final export
    ref_export = load_file(tmp_path / "ref" / "tiny-lucidrains" / "export" / "model.safetensors")
    our_export = load_file(run / "export" / "model.safetensors")
    assert ref_export.keys() == our_export.keys()
    assert all(torch.equal(our_export[k], v) for k, v in ref_export.items())
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 9))  # the killed run's step 4 logged once, not twice


def test_class_conditional_diffusers_trains_and_exports(fashion16: Path, tmp_path: Path) -> None:
    proc = synmed(
        "train",
        "generator",
        DIFF,
        f"data.shards={fashion16}",
        f"run.out_dir={tmp_path}",
        "model.num_classes=10",
    )
    assert proc.returncode == 0, proc.stderr
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(tmp_path / "tiny-diffusers" / "export")
    assert pipe.unet.config.num_class_embeds == 11
    meta = json.loads((tmp_path / "tiny-diffusers" / "export" / EXPORT_META).read_text())
    assert meta["provenance"]["weights"] == "ema" and meta["family"] == "ddpm_diffusers"
    assert (
        meta["body"]["class_names"] == [str(i) for i in range(10)]
        or len(meta["body"]["class_names"]) == 10
    )


def test_bad_inputs_fail_with_one_clear_error(
    mni16: Path, fashion16: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # each refused in this process: a fresh interpreter's imports would be most of each command's
    # time (the exit status 2 of a real process is the NaN and lr-1e30 tests')
    # images of another size than the model
    proc = synmed_here(
        capsys,
        "train",
        "generator",
        LUCID,
        f"data.shards={mni16}",
        f"run.out_dir={tmp_path}",
        "model.image_size=32",
    )
    assert (
        proc.returncode == 2
        and "model expects (1, 32, 32)" in proc.stderr
        and "Traceback" not in proc.stderr
    )
    # a class filter on an unlabelled set
    proc = synmed_here(
        capsys,
        "train",
        "generator",
        LUCID,
        f"data.shards={mni16}",
        f"run.out_dir={tmp_path}",
        "data.classes=[x]",
    )
    assert proc.returncode == 2 and "class 'x' is not in" in proc.stderr
    # a selection with no images (two images, both in train: val is empty)
    src = make_class_folders(tmp_path / "two", per_class=1, size=(16, 16))
    ingest(src, tmp_path / "two-shards", IngestOptions(format="folder"), progress=False)
    proc = synmed_here(
        capsys,
        "train",
        "generator",
        LUCID,
        f"data.shards={tmp_path / 'two-shards'}",
        "data.split=val",
    )
    assert proc.returncode == 2 and "has no images for split=val" in proc.stderr
    # class-conditional with the wrong class count
    proc = synmed_here(
        capsys,
        "train",
        "generator",
        DIFF,
        f"data.shards={fashion16}",
        f"run.out_dir={tmp_path}",
        "model.num_classes=3",
    )
    assert proc.returncode == 2 and "has 10 classes" in proc.stderr
    # a missing shard set
    proc = synmed_here(capsys, "train", "generator", LUCID, f"data.shards={tmp_path / 'nope'}")
    assert proc.returncode == 2 and "data.shards" in proc.stderr and "does not exist" in proc.stderr
    assert not (tmp_path / "tiny-lucidrains" / "checkpoints").exists()


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(mni16: Path, tmp_path: Path) -> None:
    proc = synmed(
        "train", "generator", LUCID, f"data.shards={mni16}", f"run.out_dir={tmp_path}",
        "train.max_steps=40", "train.checkpoint_every=1", "train.lr=1.0e+12", "train.max_grad_norm=null",
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    # the loss turns NaN, or the weights explode first (caught before they are checkpointed)
    assert "the training loss became" in proc.stderr or "the weights became" in proc.stderr
    assert "last good checkpoint" in proc.stderr
    run = tmp_path / "tiny-lucidrains"
    last = run_state.latest_checkpoint(run)
    if last is None:  # one step at lr 1e12 already explodes the weights: nothing was saved
        assert "last good checkpoint: none yet" in proc.stderr
        return
    assert last.name in proc.stderr
    state, _ = run_state.load_state(last, rank=0)
    floats = [t for t in state["model"].values() if t.is_floating_point()]
    assert all(torch.isfinite(t).all() and t.abs().max() < 1e12 for t in floats)


def printed_command(stderr: str, lr: str) -> list[str]:
    """The command of the fix line a diverged run prints, with ``lr`` for the one it suggests."""
    fix = next(line for line in stderr.splitlines() if line.startswith("  fix: "))
    command = ("synmed " + fix.split(": synmed ", 1)[1]).split(" (or ")[0].split()
    assert command[:3] == ["synmed", "train", "generator"], fix
    return [f"train.lr={lr}" if a.startswith("train.lr=") else a for a in command[1:]]


def test_one_step_at_lr_1e30_exports_nothing_and_the_printed_fix_works(
    mni16: Path, tmp_path: Path
) -> None:
    proc = synmed("train", "generator", LUCID, f"data.shards={mni16}", f"run.out_dir={tmp_path}",
                  "train.lr=1e30", "train.max_steps=1")  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "the weights became non-finite or exploded" in proc.stderr and "by step 1" in proc.stderr
    assert "last good checkpoint: none yet" in proc.stderr and "Traceback" not in proc.stderr
    run = tmp_path / "tiny-lucidrains"
    assert not (run / "export").exists() and not run_state.list_checkpoints(run)
    again = synmed(*printed_command(proc.stderr, "1e-3"))  # ... --restart, a lower lr
    assert again.returncode == 0, again.stderr
    exported = load_file(run / "export" / "model.safetensors")
    assert all(torch.isfinite(t).all() and t.abs().max() < 1e6 for t in exported.values())


def test_a_diverged_run_resumes_by_the_printed_command_at_a_lower_lr(
    mni16: Path, tmp_path: Path
) -> None:
    base = [LUCID, f"data.shards={mni16}", f"run.out_dir={tmp_path}",
            "train.checkpoint_every=3", "train.sample_every=100"]  # fmt: skip
    assert synmed("train", "generator", *base, "train.max_steps=3").returncode == 0
    proc = synmed("train", "generator", *base, "train.max_steps=6", "train.lr=1e30",
                  "--resume", "--allow-config-change")  # fmt: skip
    run = tmp_path / "tiny-lucidrains"
    assert proc.returncode == 2, proc.stderr
    assert f"last good checkpoint: {run / 'checkpoints' / 'step-00000003'}" in proc.stderr
    command = printed_command(proc.stderr, "1e-4")
    assert command[-2:] == ["--resume", "--allow-config-change"]
    resumed = synmed(*command)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from {run / 'checkpoints' / 'step-00000003'}" in resumed.stdout
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 6 and summary["config_changes"] == {"train.lr": [1e30, 1e-4]}


def test_a_checkpoint_write_past_the_file_size_limit_is_one_error_then_reruns(
    mni16: Path, tmp_path: Path
) -> None:
    # SIGXFSZ ignored here as suite/cli.py's main does, so a write past the limit fails with
    # EFBIG instead of killing the process.
    wrapper = ("import signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
               "from suite.cli import main; sys.exit(main(sys.argv[1:]))")  # fmt: skip
    args = ["train", "generator", LUCID, f"data.shards={mni16}", f"run.out_dir={tmp_path}",
            "train.max_steps=3", "train.checkpoint_every=3", "train.sample_every=100"]  # fmt: skip
    command = " ".join(map(shlex.quote, [sys.executable, "-c", wrapper, *args]))
    proc = subprocess.run(["bash", "-c", f"ulimit -f 200; exec {command}"], capture_output=True,
                          text=True, env=ENV, timeout=300)  # fmt: skip
    run = tmp_path / "tiny-lucidrains"
    assert proc.returncode == 2, proc.stderr
    assert f"could not write checkpoint file {run / 'checkpoints'}" in proc.stderr
    assert "(EFBIG)" in proc.stderr and "last good checkpoint: none yet" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list((run / "checkpoints").iterdir()) and not (run / "export").exists()
    again = synmed(*args)  # the fix: room again, the same command
    assert again.returncode == 0, again.stderr
    assert [p.name for p in run_state.list_checkpoints(run)] == ["step-00000003"]


def test_resume_refuses_another_config_and_fresh_run_refuses_old_folder(
    mni16: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = [LUCID, f"data.shards={mni16}", f"run.out_dir={tmp_path}", "train.max_steps=3"]
    assert synmed("train", "generator", *base).returncode == 0
    # the refusals in this process (they end before any step); the runs around them are processes
    proc = synmed_here(
        capsys, "train", "generator", *base, "train.lr=0.5", "model.dim=16", "--resume"
    )
    assert proc.returncode == 2 and "model.dim, train.lr" in proc.stderr
    proc = synmed_here(capsys, "train", "generator", *base)
    assert (
        proc.returncode == 2
        and "already holds checkpoints" in proc.stderr
        and "--resume" in proc.stderr
    )
    longer = synmed(
        "train", "generator", *base[:-1], "train.max_steps=5", "--resume"
    )  # max_steps may grow
    assert longer.returncode == 0, longer.stderr


@pytest.mark.slow
def test_two_gloo_ranks_stay_equal_and_see_different_data(mni16: Path, tmp_path: Path) -> None:
    proc = synmed_on_two_gloo_ranks(
        "train", "generator", LUCID,
        f"data.shards={mni16}", f"run.out_dir={tmp_path}", "train.record_indices=true",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "tiny-lucidrains"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["global_batch"] == 8
    assert summary["model_equal_across_ranks"] and summary["ema_equal_across_ranks"]
    seen = []
    for rank in (0, 1):
        rows = [
            json.loads(line)
            for line in (run / f"indices-rank{rank}.jsonl").read_text().splitlines()
        ]
        assert [r["step"] for r in rows] == list(range(1, 7))
        seen.append({i for r in rows for i in r["indices"]})
    assert len(seen[0]) == len(seen[1]) == 24 and not seen[0] & seen[1]
    assert sorted(p.name for p in run_state.list_checkpoints(run)[-1].iterdir()) == [
        "meta.json", "rng-rank0.pt", "rng-rank1.pt", "state.pt"
    ]  # fmt: skip


# -- GANs (dcgan, acgan) ------------------------------------------------------------------------------

DCGAN = str(REPO / "configs/generator/tiny_dcgan.yaml")
ACGAN = str(REPO / "configs/generator/tiny_acgan.yaml")


@pytest.mark.parametrize(
    ("config", "run_name", "extra"),
    [
        (
            DCGAN,
            "tiny-dcgan",
            ["model.mode=per_class", "model.num_classes=10", "train.grad_accum=2"],
        ),
        (ACGAN, "tiny-acgan", []),
    ],
    ids=["dcgan-per-class", "acgan"],
)
def test_gans_train_through_the_loop_and_export_their_generator(
    fashion16: Path, tmp_path: Path, config: str, run_name: str, extra: list[str]
) -> None:
    proc = synmed("train", "generator", config, f"data.shards={fashion16}",
                  f"run.out_dir={tmp_path}", *extra)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / run_name
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    keys = ("loss_discriminator", "loss_generator", "loss_d_real", "loss_d_fake", "loss_g_adv")
    assert all(torch.isfinite(torch.tensor([r[k] for k in keys])).all() for r in records)
    state = final_state(run)
    assert {k.split(".")[0] for k in state["model"]} == {"G", "D"}
    assert set(state["optimizers"]) == {"D", "G"}
    # the EMA covers G only; decay 0 (the reference has none): the export is the online G
    assert {k.split(".")[1] for k in state["ema"] if k.startswith("ema_model.")} == {"G"}
    exported = load_file(run / "export" / "generator.safetensors")
    online = {k.removeprefix("G."): v for k, v in state["model"].items() if k.startswith("G.")}
    assert exported.keys() == online.keys()
    # every weight and BatchNorm statistic (ema-pytorch leaves the integer batch counters alone)
    assert all(torch.equal(exported[k], v) for k, v in online.items() if v.is_floating_point())
    model, _ = load_generator(run)
    assert model.sample_preview(4, steps=1, seed=0).shape == (4, 1, 16, 16)
    assert (run / "samples" / "step-00000006.png").is_file()


def test_gan_sigkilled_mid_run_resumes_bit_identical(fashion16: Path, tmp_path: Path) -> None:
    # ACGAN draws the most from the RNGs (latents, fake labels, dropout); two micro-batches a step
    common = [ACGAN, f"data.shards={fashion16}", "train.max_steps=8", "train.checkpoint_every=3",
              "train.sample_every=100", "train.grad_accum=2"]  # fmt: skip
    ref = synmed("train", "generator", *common, f"run.out_dir={tmp_path / 'ref'}")
    assert ref.returncode == 0, ref.stderr
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "suite", "train", "generator", *common, f"run.out_dir={out}"],
        env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    metrics = out / "tiny-acgan" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        lines = metrics.read_text().splitlines() if metrics.exists() else []
        if lines and json.loads(lines[-1])["step"] >= 4:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    assert proc.wait(timeout=30) == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""
    run = out / "tiny-acgan"
    assert [p.name for p in run_state.list_checkpoints(run)] == ["step-00000003"]
    resumed = synmed("train", "generator", *common, f"run.out_dir={out}", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    want, got = final_state(tmp_path / "ref" / "tiny-acgan"), final_state(run)
    for part in ("model", "ema"):
        assert want[part].keys() == got[part].keys()
        for name, tensor in want[part].items():
            assert torch.equal(got[part][name], tensor), f"{part}.{name}"
    for name in ("D", "G"):
        for key, value in want["optimizers"][name]["state"].items():
            assert all(torch.equal(got["optimizers"][name]["state"][key][k], v)
                       for k, v in value.items() if isinstance(v, torch.Tensor))  # fmt: skip
    assert want["train_state"] == got["train_state"]


def test_a_dcgan_resumed_between_steps_matches_the_uninterrupted_run(
    fashion16: Path, tmp_path: Path
) -> None:
    # the G objective reuses the D objective's fakes: nothing of that cache may reach a checkpoint
    from suite.generative.train import GeneratorTrainer
    from suite.schema import load_config

    common = [f"data.shards={fashion16}", "model.mode=conditional", "model.num_classes=10",
              "train.grad_accum=2", "train.sample_every=100"]  # fmt: skip
    GeneratorTrainer(load_config(DCGAN, [*common, f"run.out_dir={tmp_path / 'ref'}"])).fit()
    out = [*common, f"run.out_dir={tmp_path / 'cut'}"]
    GeneratorTrainer(load_config(DCGAN, [*out, "train.max_steps=3"])).fit()
    GeneratorTrainer(load_config(DCGAN, out), resume="yes").fit()
    want = final_state(tmp_path / "ref" / "tiny-dcgan")
    got = final_state(tmp_path / "cut" / "tiny-dcgan")
    assert got["train_state"]["step"] == want["train_state"]["step"] == 6
    for part in ("model", "ema"):
        assert want[part].keys() == got[part].keys()
        for name, tensor in want[part].items():
            assert torch.equal(got[part][name], tensor), f"{part}.{name}"


def test_a_gan_whose_discriminator_wins_stops_with_one_error_and_the_printed_fix_runs(
    mni16: Path, tmp_path: Path
) -> None:
    # thresholds loose enough that a strong D "wins" within a few steps on 16 px slices
    proc = synmed("train", "generator", DCGAN, f"data.shards={mni16}", f"run.out_dir={tmp_path}",
                  "train.max_steps=30", "train.checkpoint_every=1", "train.sample_every=100",
                  "model.d_lr_factor=20", "model.d_wins_patience=2", "model.d_wins_margin=0.45",
                  "model.d_wins_g_loss=0.1")  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "the discriminator won outright for 2 consecutive steps by step" in proc.stderr
    assert "Traceback" not in proc.stderr
    run = tmp_path / "tiny-dcgan"
    step = int(proc.stderr.split("consecutive steps by step ")[1].split()[0])
    last = run_state.latest_checkpoint(run)
    assert last is not None and last.name == f"step-{step - 1:08d}"  # the last good one is kept
    assert f"last good checkpoint: {last}" in proc.stderr and not (run / "export").exists()
    fix = next(line for line in proc.stderr.splitlines() if line.startswith("  fix: "))
    command = fix.split(": synmed ", 1)[1].split(" (the checkpoints")[0].split()
    assert command[:3] == ["train", "generator", str(run / "config.yaml")]
    assert "model.d_lr_factor=5" in command and command[-1] == "--restart"
    # the fix's other half: the check off, the same command trains to the end
    again = synmed(*command, "model.d_wins_patience=0", "train.max_steps=6")
    assert again.returncode == 0, again.stderr
    assert json.loads((run / "summary.json").read_text())["steps"] == 6


def test_a_gan_whose_weights_diverge_stops_before_writing_them(mni16: Path, tmp_path: Path) -> None:
    proc = synmed("train", "generator", DCGAN, f"data.shards={mni16}", f"run.out_dir={tmp_path}",
                  "train.lr=1e30", "train.max_steps=2", "train.checkpoint_every=1")  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    # the loss turns NaN, or the weights explode first (caught before they are checkpointed)
    assert "the training loss became" in proc.stderr or "the weights became" in proc.stderr
    assert "last good checkpoint" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "tiny-dcgan" / "export").exists()


def test_a_gan_trained_briefly_is_closer_to_the_data_than_at_step_0(
    mni16: Path, tmp_path: Path
) -> None:
    from suite.data.dataset import ShardDataset
    from suite.generative.families import build_generator
    from suite.schema import load_config

    small = ["model.ngf=16", "model.ndf=16"]
    proc = synmed("train", "generator", DCGAN, f"data.shards={mni16}", f"run.out_dir={tmp_path}",
                  "train.max_steps=100", "train.batch_size=16", "train.lr=1e-3",
                  "train.checkpoint_every=100", "train.sample_every=100", *small)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    data = ShardDataset(mni16)
    real = torch.stack([data[i]["image"].float() / 255 for i in range(len(data))])

    def distance(model) -> float:
        """L1 between the mean images, and between the mean pixel spreads, of 64 samples and
        the data (a brain slice's dark background and bright tissue)."""
        fake = model.sample_preview(64, steps=1, seed=0)
        spread = (fake.std(0).mean() - real.std(0).mean()).abs()
        return float((fake.mean(0) - real.mean(0)).abs().mean() + spread)

    trained, _ = load_generator(tmp_path / "tiny-dcgan")
    torch.manual_seed(0)
    untrained = build_generator(load_config(DCGAN, small).model).eval()
    assert distance(trained) < 0.5 * distance(untrained), (distance(trained), distance(untrained))


def test_two_gloo_ranks_train_a_per_class_dcgan_in_sync(fashion16: Path, tmp_path: Path) -> None:
    proc = synmed_on_two_gloo_ranks(
        "train", "generator", DCGAN,
        f"data.shards={fashion16}", f"run.out_dir={tmp_path}", "model.mode=per_class",
        "model.num_classes=10", "train.grad_accum=2",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "tiny-dcgan" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["global_batch"] == 32
    assert summary["model_equal_across_ranks"] and summary["ema_equal_across_ranks"]


# -- pggan -----------------------------------------------------------------------------------------

PGGAN = str(REPO / "configs/generator/tiny_pggan.yaml")
# A run that SIGKILLs itself inside step 10, after its D and G updates and before any of it is
# saved: a deterministic kill point (polling the metrics races steps of a few milliseconds).
KILL_IN_STEP_10 = """
import os, signal, sys
from suite.generative.train import GeneratorTrainer
from suite.schema import load_config
trainer = GeneratorTrainer(load_config(sys.argv[1], sys.argv[2:]))
trainer.fit(stop_requested=lambda: trainer.step >= 9 and os.kill(os.getpid(), signal.SIGKILL))
"""


def pggan_phases(run: Path) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(int(r["scale"]), r["alpha"]) for r in rows]


@pytest.fixture(scope="module")
def pggan_run(mni16: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny PGGAN (4 -> 8 -> 16 px in 10 steps) trained on MNI152 slices (its run folder)."""
    root = tmp_path_factory.mktemp("pggan")
    proc = synmed("train", "generator", PGGAN, f"data.shards={mni16}", f"run.out_dir={root}")
    assert proc.returncode == 0, proc.stderr
    return root / "tiny-pggan"


def test_tiny_pggan_grows_from_4_to_16_px_on_real_data(pggan_run: Path) -> None:
    third, two_thirds = 1 / 3, 2 / 3
    assert pggan_phases(pggan_run) == [
        (0, 1.0), (0, 1.0), (1, third), (1, two_thirds), (1, 1.0), (1, 1.0),
        (2, third), (2, two_thirds), (2, 1.0), (2, 1.0),
    ]  # fmt: skip
    rows = [json.loads(line) for line in (pggan_run / "metrics.jsonl").read_text().splitlines()]
    for r in rows:
        assert all(math.isfinite(r[k]) for k in ("loss_discriminator", "loss_generator"))
    # the phase is in each checkpoint's train state; the EMA holds G only
    first, last = run_state.list_checkpoints(pggan_run)
    state, _ = run_state.load_state(first, rank=0)
    assert state["train_state"]["phase"] == "stable-8px"
    assert {"scale": 1, "alpha": 1.0, "resolution": 8}.items() <= state["train_state"][
        "values"
    ].items()
    state = final_state(pggan_run)
    assert state["train_state"]["phase"] == "stable-16px"
    assert set(state["optimizers"]) == {"D", "G"}
    ema = {k.removeprefix("ema_model.G."): v for k, v in state["ema"].items() if ".G." in k}
    assert ema and not any(".D." in k for k in state["ema"])
    exported = load_file(pggan_run / "export" / "generator.safetensors")
    assert exported.keys() == ema.keys()
    assert all(torch.equal(exported[k], v) for k, v in ema.items())
    online = {k.removeprefix("G."): v for k, v in state["model"].items() if k.startswith("G.")}
    assert not all(torch.equal(exported[k], online[k]) for k in exported)
    model, _ = load_generator(pggan_run)
    from suite.generative.base import SampleOptions

    out = model.sample([0, 1], 0, None, SampleOptions(sampler="gan", steps=1))
    assert out.images.shape == (2, 1, 16, 16) and not model.training


def test_pggan_sigkilled_mid_fade_resumes_bit_identical(mni16: Path, tmp_path: Path) -> None:
    # 3 fade steps per scale: steps 8-10 fade 16 px in (alpha 1/4, 2/4, 3/4); the checkpoint of
    # step 9 is mid-fade and the kill lands in step 10
    common = [PGGAN, f"data.shards={mni16}", "train.max_steps=12", "train.checkpoint_every=3",
              "model.steps_per_fade=3", "train.sample_every=100"]  # fmt: skip
    ref = synmed("train", "generator", *common, f"run.out_dir={tmp_path / 'ref'}")
    assert ref.returncode == 0, ref.stderr
    out = tmp_path / "killed"
    killed = subprocess.run([sys.executable, "-c", KILL_IN_STEP_10, *common, f"run.out_dir={out}"],
                            env=ENV, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    run = out / "tiny-pggan"
    last = run_state.latest_checkpoint(run)
    assert last is not None and last.name == "step-00000009"
    state, _ = run_state.load_state(last, rank=0)
    assert state["train_state"]["phase"] == "fade-16px"
    assert state["train_state"]["values"]["alpha"] == 0.5

    resumed = synmed("train", "generator", *common, f"run.out_dir={out}", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert pggan_phases(run)[8:] == [(2, 0.5), (2, 0.75), (2, 1.0), (2, 1.0)]
    want, got = final_state(tmp_path / "ref" / "tiny-pggan"), final_state(run)
    for part in ("model", "ema"):
        assert want[part].keys() == got[part].keys()
        for name, tensor in want[part].items():
            assert torch.equal(got[part][name], tensor), f"{part}.{name}"
    for name in ("D", "G"):
        for key, moments in want["optimizers"][name]["state"].items():
            for k, v in moments.items():
                assert torch.equal(got["optimizers"][name]["state"][key][k], v), f"{name}.{key}.{k}"
    assert got["train_state"] == want["train_state"]
    ref_export = load_file(tmp_path / "ref" / "tiny-pggan" / "export" / "generator.safetensors")
    our_export = load_file(run / "export" / "generator.safetensors")
    assert ref_export.keys() == our_export.keys()
    assert all(torch.equal(our_export[k], v) for k, v in ref_export.items())


def test_class_conditional_pggan_trains_on_fashion_mnist(fashion16: Path, tmp_path: Path) -> None:
    proc = synmed("train", "generator", PGGAN, f"data.shards={fashion16}", f"run.out_dir={tmp_path}",
                  "model.num_classes=10", "model.class_head=projection", "train.max_steps=8")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / "tiny-pggan"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and all(math.isfinite(r["loss"]) for r in rows)
    model, _ = load_generator(run)
    from suite.generative.base import Conditions, SampleOptions

    out = model.sample([0, 1, 2], 0, Conditions(labels=np.array([0, 5, 9])),
                       SampleOptions(sampler="gan", steps=1))  # fmt: skip
    assert out.images.shape == (3, 1, 16, 16) and out.labels.tolist() == [0, 5, 9]


@pytest.mark.slow
def test_pggan_on_two_gloo_ranks_with_inactive_scales(mni16: Path, tmp_path: Path) -> None:
    proc = synmed_on_two_gloo_ranks(
        "train", "generator", PGGAN,
        f"data.shards={mni16}", f"run.out_dir={tmp_path}", "train.record_indices=true",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "tiny-pggan"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 10
    assert summary["model_equal_across_ranks"] and summary["ema_equal_across_ranks"]
    seen = [
        {i for line in (run / f"indices-rank{r}.jsonl").read_text().splitlines()
         for i in json.loads(line)["indices"]}
        for r in (0, 1)
    ]  # fmt: skip
    assert not seen[0] & seen[1]
    assert pggan_phases(run)[-1] == (2, 1.0)


@pytest.mark.ray
@pytest.mark.usefixtures("joined_ray")
def test_synmed_sample_of_a_pggan_gives_each_index_its_own_latent(
    pggan_run: Path, tmp_path: Path
) -> None:
    from suite.data.dataset import ShardDataset
    from suite.generative.base import SampleOptions

    proc = synmed("sample", "--checkpoint", str(pggan_run), "--num-images", "6", "--shard-size", "3",
                  "--batch-size", "4", "--sampler", "gan", "--sampling-steps", "1", "--seed", "5",
                  "--workers", "1", "--out", str(tmp_path / "set"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = ShardDataset(tmp_path / "set")
    model, _ = load_generator(pggan_run)
    want = model.sample(range(6), 5, None, SampleOptions(sampler="gan", steps=1)).images
    got = {int(data[i]["index"]): data[i]["image"].numpy() for i in range(len(data))}
    assert sorted(got) == list(range(6))
    assert all(np.array_equal(got[i], want[i]) for i in range(6))  # batches of 4, shards of 3
