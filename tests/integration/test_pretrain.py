"""`synmed pretrain` end to end: DINO and SimCLR on real shards, mixed sources, 2 gloo ranks,
SIGKILL then resume, the kNN monitor, and the export read back as an ``ssl:PATH`` encoder."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from suite.features.encoders import build_encoder, resolve_encoder
from suite.models.backbones import load_backbone, read_backbone_spec
from suite.train import run_state
from tests.conftest import need
from tests.integration.helpers import (
    ENV,
    REPO,
    demo_shards,
    synmed,
    synmed_here,
    synmed_on_two_gloo_ranks,
)

DINO = str(REPO / "configs" / "ssl" / "tiny_dino_vit.yaml")
SIMCLR = str(REPO / "configs" / "ssl" / "tiny_simclr.yaml")


@pytest.fixture(scope="module")
def fashion16(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not Path("/usr/share/datasets/fashion-mnist").is_dir():
        need("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist, Debian)")
    return demo_shards(
        "fashion-mnist", tmp_path_factory.mktemp("data") / "fm16", image_size=16, limit=300
    )


def test_dino_vit_trains_monitors_and_exports_an_encoder(
    mni16: Path, fashion16: Path, tmp_path: Path
) -> None:
    proc = synmed("pretrain", DINO, f"pretrain.sources.real={mni16}", f"run.out_dir={tmp_path}",
                  f"pretrain.knn.shards={fashion16}", "pretrain.knn.eval_split=test")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / "tiny-dino-vit"
    summary = json.loads((run / "summary.json").read_text())
    # 106 training slices // batch 8 = 13 steps per epoch, 2 epochs
    assert summary["steps"] == 26 and summary["method"] == "dino" and summary["arch"] == "vit_tiny"
    assert 0.0 < summary["knn_accuracy"] <= 1.0 and "kNN accuracy" in proc.stdout
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    knn = [r for r in records if "knn_accuracy" in r]
    assert [r["epoch"] for r in knn] == [1, 2]
    losses = [r for r in records if "loss" in r]
    # the teacher momentum rises on its cosine; the LR warms up during epoch 1
    assert losses[0]["teacher_momentum"] == pytest.approx(0.996)
    assert losses[-1]["teacher_momentum"] > 0.999
    assert losses[0]["lr"] == 0.0 and losses[12]["lr"] > losses[5]["lr"]
    assert list(run.glob("events.out.tfevents*")) or list(run.rglob("events.out.tfevents*"))
    assert (run / "loss.png").is_file()

    export = Path(summary["export"])
    exported, meta, _ = read_backbone_spec(export)
    assert meta.provenance["weights"] == "teacher" and exported.in_channels == 1
    net, spec = load_backbone(export)
    state, _ = run_state.load_state(run_state.latest_checkpoint(run), rank=0)
    teacher = {k.removeprefix("teacher_backbone."): v for k, v in state["model"].items()
               if k.startswith("teacher_backbone.")}  # fmt: skip
    for name, tensor in net.state_dict().items():
        assert torch.equal(tensor, teacher[name]), name
    encoder = build_encoder(resolve_encoder(f"ssl:{export}"))
    features = encoder(torch.randint(0, 256, (3, 1, 16, 16), dtype=torch.uint8))
    assert features.shape == (3, spec.dim) == (3, 192) and torch.isfinite(features).all()


def test_simclr_on_a_real_plus_synthetic_mix(mni16: Path, tmp_path: Path) -> None:
    # the "synthetic" source: the same slices re-ingested as another shard set
    synthetic = demo_shards("mni152", tmp_path / "syn16", image_size=16)
    proc = synmed("pretrain", SIMCLR, f"pretrain.sources.real={mni16}",
                  f"pretrain.sources.synthetic={synthetic}", "pretrain.mix=real:0.75,synthetic:0.25",
                  f"run.out_dir={tmp_path}", "pretrain.epochs=1")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "tiny-simclr" / "summary.json").read_text())
    assert summary["mix"] == {"real": 0.75, "synthetic": 0.25}
    assert set(summary["sources"]) == {"real", "synthetic"} and summary["steps"] == 26
    exported, meta, _ = read_backbone_spec(Path(summary["export"]))
    assert exported.arch == "resnet18" and exported.stem == "cifar"
    assert set(meta.provenance["source_manifest_sha256"]) == {"real", "synthetic"}


def test_two_gloo_ranks_keep_student_teacher_and_centre_equal(mni16: Path, tmp_path: Path) -> None:
    proc = synmed_on_two_gloo_ranks(
        "pretrain", DINO,
        f"pretrain.sources.real={mni16}", f"run.out_dir={tmp_path}", "pretrain.epochs=1",
        "train.record_indices=true",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "tiny-dino-vit"
    summary = json.loads((run / "summary.json").read_text())
    # model = student + teacher + the loss centre (all-reduced by DINOLoss)
    assert summary["world_size"] == 2 and summary["model_equal_across_ranks"]
    assert summary["global_batch"] == 16 and summary["steps"] == 6  # 106 // 2 // 8
    seen = [{i for line in (run / f"indices-rank{r}.jsonl").read_text().splitlines()
             for i in json.loads(line)["indices"]} for r in (0, 1)]  # fmt: skip
    assert len(seen[0]) == len(seen[1]) == 48 and not seen[0] & seen[1]


def test_one_process_group_per_trainer_when_a_job_trains_twice(mni16: Path, tmp_path: Path) -> None:
    # a run's pretrain stage trains every variant and seed in one job: each trainer tears its
    # process group down and the next one must bring up its own
    script = tmp_path / "twice.py"
    script.write_text(
        "import sys\n"
        "from suite.schema import load_config\n"
        "from suite.ssl.train import pretrain\n"
        "for name in ('first', 'second'):\n"
        "    cfg = load_config(sys.argv[1], [*sys.argv[2:], f'run.name={name}'])\n"
        "    pretrain(cfg)\n"
    )
    accelerate = Path(sys.executable).with_name("accelerate")
    proc = subprocess.run(
        [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
         "--mixed_precision", "no", "--dynamo_backend", "no", str(script), DINO,
         f"pretrain.sources.real={mni16}", f"run.out_dir={tmp_path}", "pretrain.epochs=1"],
        capture_output=True, text=True, timeout=300, env=ENV, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("first", "second"):
        summary = json.loads((tmp_path / name / "summary.json").read_text())
        assert summary["world_size"] == 2 and summary["model_equal_across_ranks"]


def test_sigkill_then_resume_matches_the_uninterrupted_run(mni16: Path, tmp_path: Path) -> None:
    common = [DINO, f"pretrain.sources.real={mni16}", "train.checkpoint_every=5",
              "train.num_workers=1"]  # fmt: skip
    ref = synmed("pretrain", *common, f"run.out_dir={tmp_path / 'ref'}")
    assert ref.returncode == 0, ref.stderr
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "suite", "pretrain", *common, f"run.out_dir={out}"],
        env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    metrics = out / "tiny-dino-vit" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        lines = metrics.read_text().splitlines() if metrics.exists() else []
        if lines and json.loads(lines[-1])["step"] >= 7:
            proc.send_signal(signal.SIGKILL)  # after checkpoint 5, before checkpoint 10
            break
        time.sleep(0.01)
    assert proc.wait(timeout=30) == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""
    run = out / "tiny-dino-vit"
    assert [p.name for p in run_state.list_checkpoints(run)] == ["step-00000005"]
    resumed = synmed("pretrain", *common, f"run.out_dir={out}", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["resumed_from"].endswith("step-00000005") and summary["steps"] == 26
    want, _ = run_state.load_state(
        run_state.latest_checkpoint(tmp_path / "ref" / "tiny-dino-vit"), 0
    )
    got, _ = run_state.load_state(run_state.latest_checkpoint(run), 0)
    assert want["model"].keys() == got["model"].keys()
    for name, tensor in want["model"].items():  # student, teacher and centre: bit-identical
        assert torch.equal(got["model"][name], tensor), name
    from safetensors.torch import load_file

    ref_export = load_file(tmp_path / "ref" / "tiny-dino-vit" / "export" / "backbone.safetensors")
    our_export = load_file(run / "export" / "backbone.safetensors")
    assert ref_export.keys() == our_export.keys()
    assert all(torch.equal(our_export[k], v) for k, v in ref_export.items())


def test_bad_pretrain_configs_name_the_fix(
    mni16: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # refused in this process: a fresh interpreter's imports would be most of each command's time
    proc = synmed_here(capsys, "pretrain", DINO, f"pretrain.sources.real={mni16}", "pretrain.mix=synthetic",
                  f"run.out_dir={tmp_path}")  # fmt: skip
    assert proc.returncode == 2 and "'synthetic', which is not a source" in proc.stderr
    proc = synmed_here(capsys, "pretrain", DINO, f"pretrain.sources.real={tmp_path}",
                       f"run.out_dir={tmp_path}")  # fmt: skip
    assert proc.returncode == 2 and "not a shard set" in proc.stderr
    proc = synmed_here(capsys, "pretrain", DINO, f"pretrain.sources.real={mni16}",
                       "pretrain.backbone.arch=vgg",
                  f"run.out_dir={tmp_path}")  # fmt: skip
    assert proc.returncode == 2 and "arch 'vgg' is not supported" in proc.stderr
    assert not (tmp_path / "tiny-dino-vit" / "checkpoints").exists()
