"""Checkpoint sampling and the self-validation sweep through Ray, as a user runs them.

A tiny ACGAN run (2 steps, a checkpoint at each, EMA decay 0.9) and a random-init ResNet-18
classifier: `synmed evaluate self-validate-sweep` samples each saved step on Ray (the last step's
set holds the export's bytes and records the step), scores it exactly as
`synmed evaluate self-validate` scores that set, and `synmed report` draws F1 against step and
tabulates the measured values. The sweep runs on the session's Ray.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from suite.artifacts.digests import sha256_file
from suite.artifacts.results import read_result
from suite.cli import main
from suite.data.dataset import ShardDataset
from suite.generative.export import load_generator
from suite.sampling.job import plan_from_dict, sample_rows
from suite.train.run_state import CHECKPOINTS, META
from tests.unit.generative.test_checkpoints import train

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("joined_ray")]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train(tmp_path_factory.mktemp("acgan"), "acgan")


def classifier(folder: Path, names: list[str], channels: int = 1) -> Path:
    """A random-init ResNet-18 (CIFAR stem, 16 px) exported as `evaluate classify` does."""
    import torch

    from suite.evaluation.classify.backbone import ResolvedBackbone
    from suite.evaluation.classify.finetune import Classifier, export_classifier, make_preprocess
    from suite.models.backbones import BackboneSpec

    spec = BackboneSpec(arch="resnet18", image_size=16, in_channels=channels, stem="cifar")
    resolved = ResolvedBackbone(spec, 16, False, {"kind": "random"}, init_seed=0)
    torch.manual_seed(0)
    model = Classifier(make_preprocess(resolved), resolved.build(), spec.dim, len(names)).eval()
    return export_classifier(model, resolved, folder, class_names=names, multilabel=False,
                             data_shape=(channels, 16, 16), provenance={"seed": 0})  # fmt: skip


def by_index(folder: Path) -> dict[int, bytes]:
    data = ShardDataset(folder)
    return {int(data[i]["index"]): data[i]["image"].numpy().tobytes() for i in range(len(data))}


def test_the_sweep_scores_each_step_as_self_validate_and_the_report_draws_it(
    run: Path, tmp_path: Path, joined_ray: str
) -> None:
    from suite.evaluation.classify.self_validation import self_validate
    from suite.report.cli import write_report

    clf = classifier(tmp_path / "clf", ["a", "b", "c"])
    out = tmp_path / "sweep"
    # in-process (the CLI's path is main() below): the session's Ray is this process's
    assert main(["evaluate", "self-validate-sweep", "--run", str(run), "--classifier", str(clf),
                 "--per-class", "3", "--out", str(out), "--ray-address", joined_ray]) == 0  # fmt: skip
    result = read_result(out)
    assert result.task == "self_validate_sweep" and result.context["steps"] == [1, 2]
    assert result.context["images_per_step"] == 9
    # the last step's set, sampled by a Ray actor from the checkpoint, holds the export's bytes
    last = out / "samples" / "step-00000002"
    plan = plan_from_dict(json.loads((last / "job.json").read_text())["plan"])
    assert plan.checkpoint_step == 2
    assert plan.checkpoint_digest == sha256_file(run / CHECKPOINTS / "step-00000002" / META)
    export, _ = load_generator(run)
    rows = sample_rows(export, plan, 0, plan.num_images, None, "cpu")
    assert by_index(last) == {int(i): im.tobytes() for i, im in zip(rows["index"], rows["images"])}
    for step in (1, 2):
        fake = out / "samples" / f"step-{step:08d}"
        assert ShardDataset(fake).manifest.attrs["checkpoint_step"] == step
        alone = self_validate(clf, fake, tmp_path / f"sv{step}", log=print)
        for name, value in alone["metrics"].items():
            assert result.metrics[f"step_{step}.{name.split('.', 1)[1]}"] == value, name
        assert result.per_class[f"step_{step}"] == alone["per_class"]["self_validation"]
        f1 = [m["f1"]["mean"] for m in result.per_class[f"step_{step}"].values()]
        assert result.metrics[f"step_{step}.f1_macro"]["mean"] == pytest.approx(sum(f1) / 3)

    report = write_report(out, tmp_path / "report")
    figure = tmp_path / "report" / "figures" / "f1_against_step_sweep.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = report.read_text()
    assert "## Self-validation against training step" in text
    assert "figures/f1_against_step_sweep.png" in text
    with open(tmp_path / "report" / "tables" / "self_validation_sweep_sweep.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2]
    for r in rows:
        macro = result.metrics[f"step_{r['step']}.f1_macro"]["mean"]
        micro = result.metrics[f"step_{r['step']}.f1_micro"]["mean"]
        assert float(r["f1_macro"]) == macro and float(r["f1_micro"]) == micro
        assert f"| {r['step']} | 9 | " in text and f"{macro:.3f}" in text
    with open(tmp_path / "report" / "tables" / "self_validation_sweep_per_class_sweep.csv") as f:
        per_class = list(csv.DictReader(f))
    assert [(r["step"], r["class"]) for r in per_class] == [
        (s, c) for s in ("1", "2") for c in ("a", "b", "c", "macro avg", "micro avg")
    ]
    b_at_2 = next(r for r in per_class if r["step"] == "2" and r["class"] == "b")
    assert float(b_at_2["f1"]) == result.per_class["step_2"]["b"]["f1"]["mean"]


def test_a_classifier_of_other_classes_is_one_error_before_sampling(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clf = classifier(tmp_path / "clf", ["a", "b", "x"])
    out = tmp_path / "sweep"
    args = ["evaluate", "self-validate-sweep", "--run", str(run), "--classifier", str(clf),
            "--per-class", "1", "--out", str(out)]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"the generator run {run} has classes ['c'] that the classifier does not know" in err
    assert "Traceback" not in err and not out.exists()
    assert main([*args, "--steps", "2,5"]) == 2
    err = capsys.readouterr().err
    assert f"{run} has no checkpoint of step(s) 5; saved steps: 1, 2" in err and not out.exists()


def test_other_bad_input_is_one_error_before_sampling(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clf = classifier(tmp_path / "clf", ["a", "b", "c"])

    def sweep(run_dir: Path, out: Path, classifier_dir: Path = clf) -> str:
        assert main(["evaluate", "self-validate-sweep", "--run", str(run_dir), "--classifier",
                     str(classifier_dir), "--per-class", "1", "--out", str(out)]) == 2  # fmt: skip
        err = capsys.readouterr().err
        assert "Traceback" not in err
        return err

    bare = tmp_path / "bare"
    bare.mkdir()
    assert f"{bare} holds no saved checkpoints" in sweep(bare, tmp_path / "o1")
    unconditional = train(tmp_path / "u", "dcgan", "tiny_dcgan.yaml", classes=0)
    err = sweep(unconditional, tmp_path / "o2")
    assert f"{unconditional} trains an unconditional generator" in err
    rgb = classifier(tmp_path / "rgb", ["a", "b", "c"], channels=3)
    err = sweep(run, tmp_path / "o3", rgb)
    assert f"{run} makes 1-channel images, the classifier {rgb} was trained on 3-channel" in err
    other = tmp_path / "o4"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert f"{other} is not empty and is not a self-validation sweep" in sweep(run, other)
    assert [p.name for p in other.iterdir()] == ["notes.txt"]
    assert not any((tmp_path / f"o{n}").exists() for n in (1, 2, 3))
