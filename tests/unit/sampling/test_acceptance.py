"""Classifier-in-the-loop sampling (suite/sampling/acceptance.py): rejected rows are redrawn with
their own noise until accepted or out of attempts, the same whatever the batching; the columns
land in the shards and readers filter on them; bad options, an unconditional generator and a
classifier of other classes are refused before anything is written. Real Ray runs in
tests/integration/test_sample_accept_ray.py."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from suite.cli import main
from suite.data.dataset import ShardDataset
from suite.data.shards import ShardRecord, write_manifest
from suite.data.verify import verify_shard_set
from suite.errors import ShardError
from suite.generative.base import Conditions, SampleOptions
from suite.generative.export import export_generator, load_generator
from suite.generative.families import build_generator
from suite.sampling.acceptance import Acceptor, accept_settings, acceptance_summary
from suite.sampling.job import (
    SamplingPlan,
    ShardSampler,
    make_plan,
    prepare_output,
    sample_rows,
    shard_attrs,
)
from suite.schema import load_config

REPO = Path(__file__).resolve().parents[3]
CLASSES = ["a", "b", "c"]
K = 3  # attempts


def tiny_acgan(
    folder: Path, *, class_names: list[str] = CLASSES, unconditional: bool = False
) -> Path:
    """An untrained 16 px ACGAN of 3 classes (or an unconditional DCGAN) exported to ``folder``."""
    name, overrides = ("dcgan", []) if unconditional else ("acgan", ["model.num_classes=3"])
    torch.manual_seed(0)
    model = build_generator(
        load_config(REPO / f"configs/generator/tiny_{name}.yaml", overrides).model
    )
    export_generator(model, folder, {}, [] if unconditional else class_names)
    return folder


def tiny_classifier(folder: Path, generator: Path, class_names: list[str] = CLASSES) -> Path:
    """A random ResNet-18 classifier export whose head is centred on the generator's features,
    so its decisions vary from image to image (a random head predicts one class for all)."""
    from suite.evaluation.classify.backbone import ResolvedBackbone
    from suite.evaluation.classify.finetune import Classifier, export_classifier, make_preprocess
    from suite.models.backbones import BackboneSpec, build_backbone

    model, _ = load_generator(generator)
    images = model.sample(range(32), 99, Conditions(labels=np.arange(32) % 3), GAN).images
    spec = BackboneSpec(arch="resnet18", image_size=16, in_channels=1, stem="cifar")
    torch.manual_seed(0)
    resolved = ResolvedBackbone(spec, 16, False, {"kind": "random"})
    clf = Classifier(make_preprocess(resolved), build_backbone(spec), spec.dim, 3).eval()
    with torch.no_grad():
        f = clf.backbone(clf.preprocess(torch.from_numpy(images))).flatten(1)
        w = torch.randn(3, f.shape[1], generator=torch.Generator().manual_seed(0))
        w = w / (f.std(0) + 1e-6) / f.shape[1] ** 0.5
        clf.head.weight.copy_(w)
        clf.head.bias.copy_(-(w @ f.mean(0)))
    export_classifier(clf, resolved, folder, class_names=class_names, multilabel=False,
                      data_shape=(1, 16, 16), provenance={"seed": 0})  # fmt: skip
    return folder


GAN = SampleOptions(sampler="gan", steps=1)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("accept")
    generator = tiny_acgan(root / "gen")
    return generator, tiny_classifier(root / "clf", generator)


def accept_plan(generator: Path, classifier: Path, *, batch_size: int = 2, n: int = 4,
                shard_size: int = 12, p: float = 0.5) -> SamplingPlan:  # fmt: skip
    model, digest = load_generator(generator)
    accepting = accept_settings(classifier, p, K)
    assert accepting is not None
    return make_plan(digest, model.class_names, 3, samplers=model.samplers, num_images=None,
                     per_class=n, class_weights=None, shard_size=shard_size, batch_size=batch_size,
                     sampler="gan", steps=1, seed=0, guidance_scale=1.0, accept=accepting[0])  # fmt: skip


def test_rejected_rows_are_redrawn_with_their_own_noise_whatever_the_batching(
    models: tuple[Path, Path],
) -> None:
    generator, classifier = models
    model, _ = load_generator(generator)
    runs = []
    for batch_size in (2, 5):
        plan = accept_plan(generator, classifier, batch_size=batch_size)
        runs.append(sample_rows(model, plan, 0, 12, None, "cpu", Acceptor(classifier, plan, "cpu")))
    two, five = runs
    assert two.keys() == five.keys() >= {"images", "labels", "attempts", "confidence", "accepted"}
    for key in two:
        assert np.array_equal(two[key], five[key]), key  # the same bytes and columns
    acceptor = Acceptor(classifier, plan, "cpu")
    for row, i in enumerate(two["index"]):
        label = two["labels"][row : row + 1]
        last = SampleOptions(sampler="gan", steps=1, attempt=int(two["attempts"][row]) - 1)
        image = model.sample([int(i)], 0, Conditions(labels=label), last).images
        assert np.array_equal(image[0], two["images"][row])  # the row holds its last attempt
        confidence, accepted = acceptor.judge(image, label)
        assert confidence[0] == two["confidence"][row] and accepted[0] == two["accepted"][row]
        if not two["accepted"][row]:
            assert two["attempts"][row] == K  # only a row out of attempts stays rejected
    attempts, ok = two["attempts"], two["accepted"]
    # this fixture meets every case: accepted at once, accepted after redraws, ran out
    assert (ok & (attempts == 1)).any() and (ok & (attempts > 1)).any() and (~ok).any()
    assert (two["confidence"][ok] >= 0.5).all()


def test_the_columns_reach_the_shards_and_readers_keep_accepted_rows(
    models: tuple[Path, Path], tmp_path: Path
) -> None:
    generator, classifier = models
    plan = accept_plan(generator, classifier, shard_size=6)
    out = tmp_path / "s"
    prepare_output(out, plan, str(generator))
    actor = ShardSampler(str(generator), json.loads(json.dumps(asdict(plan))), str(out),
                         accept=str(classifier))  # fmt: skip
    result = actor(
        {"shard": np.array([0, 1]), "start": np.array([0, 6]), "stop": np.array([6, 12])}
    )
    assert list(result["error"]) == ["", ""]
    records = [ShardRecord(**json.loads(r)) for r in result["record"]]
    write_manifest(out, records, shard_attrs(plan, str(generator)))
    assert verify_shard_set(out).count == 12  # the new columns are part of the schema
    every = ShardDataset(out)
    accepted = every.read_column("accepted")
    assert accepted is not None and accepted.dtype == bool
    kept = ShardDataset(out, accepted_only=True)
    assert 0 < len(kept) == int(accepted.sum()) < 12
    assert set(kept.indices) == set(every.indices[accepted])
    summary = acceptance_summary(out, plan)
    labels = every.labels
    assert labels is not None
    for c, name in enumerate(CLASSES):
        want = accepted[labels == c].mean()
        assert summary["per_class"][name] == {"rows": 4, "accepted": int(want * 4), "rate": want}
    assert summary["ran_out"] == 12 - len(kept) and summary["max_attempts"] == K
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["attrs"]["accept_classifier_digest"] == plan.accept_digest


@pytest.mark.parametrize(
    ("field", "value"),
    [("min_confidence", 0.6), ("max_attempts", 4), ("accept_digest", "0" * 64)],
)
def test_a_resume_with_other_acceptance_settings_is_refused(
    models: tuple[Path, Path], tmp_path: Path, field: str, value: object
) -> None:
    plan = accept_plan(*models)
    prepare_output(tmp_path / "s", plan, "ckpt")
    other = dataclasses.replace(plan, **{field: value})
    with pytest.raises(ShardError, match=f"another sampling job: {field} ") as err:
        prepare_output(tmp_path / "s", other, "ckpt")
    assert "new --out" in err.value.fix


def test_a_plan_without_acceptance_keeps_its_digest() -> None:
    from tests.unit.sampling.test_job import tiny_plan

    # the digest tiny_plan() had before --accept existed: folders sampled then still resume
    assert tiny_plan().digest == "e9fcbe64633e40fa725f3cc0e786a8820af77cc894c59aa390d781263d7d4de5"


def test_a_changed_classifier_is_refused_where_it_loads(models: tuple[Path, Path]) -> None:
    plan = dataclasses.replace(accept_plan(*models), accept_digest="0" * 64)
    with pytest.raises(ShardError, match="changed since the job was planned"):
        Acceptor(models[1], plan, "cpu")


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "error: --accept: classifier folder {tmp}/nope does not exist"),
        ("empty", "error: --accept: {tmp}/empty is not a classifier export (no synmed-export.json)"),
        ("generator", "is a generator export, not a classifier export"),
        ("p0", "error: --min-confidence is 0.0, it must lie in (0, 1]"),
        ("p>1", "error: --min-confidence is 1.5, it must lie in (0, 1]"),
        ("k0", "error: --max-attempts is 0, it must be at least 1"),
        ("no-accept", "error: --min-confidence and --max-attempts set the filter of --accept"),
        ("unconditional", "error: --accept compares each row's class with the classifier's "
                          "prediction; this generator is unconditional"),
        ("unlabelled", "error: --accept needs a label per row"),
        ("classes", "does not know the generator's class(es) ['x', 'y', 'z']"),
    ],
)  # fmt: skip
def test_bad_accept_inputs_are_one_error_before_anything_is_written(
    models: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    case: str,
    message: str,
) -> None:
    generator, classifier = models
    (tmp_path / "empty").mkdir()
    options = {"--accept": str(classifier), "--per-class": "2"}
    if case in ("missing", "empty", "generator"):
        options["--accept"] = str({"missing": tmp_path / "nope", "empty": tmp_path / "empty",
                                   "generator": generator}[case])  # fmt: skip
    options.update({"p0": {"--min-confidence": "0"}, "p>1": {"--min-confidence": "1.5"},
                    "k0": {"--max-attempts": "0"}}.get(case, {}))  # fmt: skip
    if case == "no-accept":
        options = {"--per-class": "2", "--max-attempts": "3"}
    if case == "unconditional":
        generator = tiny_acgan(tmp_path / "dcgan", unconditional=True)
        options = {"--accept": str(classifier), "--num-images": "4"}
    if case == "unlabelled":
        options = {"--accept": str(classifier), "--num-images": "4"}
    if case == "classes":
        generator = tiny_acgan(tmp_path / "xyz", class_names=["x", "y", "z"])
    out = tmp_path / "out"
    argv = ["sample", "--checkpoint", str(generator), "--out", str(out)]
    argv += [x for kv in options.items() for x in kv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message.format(tmp=tmp_path) in err and "fix:" in err
    assert not out.exists()


# every family's tiny config (the sd_lora family's tests live with it)
_CONFIGS = {"ddpm_lucidrains": "lucidrains", "ddpm_diffusers": "diffusers", "dcgan": "dcgan",
            "acgan": "acgan", "pggan": "pggan"}  # fmt: skip


@pytest.mark.parametrize("kind", list(_CONFIGS))
def test_every_family_draws_attempt_a_from_its_own_noise(kind: str) -> None:
    overrides = ["model.num_classes=3"] if kind in ("ddpm_diffusers", "acgan") else []
    config = load_config(REPO / f"configs/generator/tiny_{_CONFIGS[kind]}.yaml", overrides)
    assert config.model.kind == kind
    torch.manual_seed(0)
    model = build_generator(config.model)
    sampler = "ddim" if "ddim" in model.samplers else model.samplers[0]
    cond = Conditions(labels=np.array([1])) if model.num_classes else None

    def draw(attempt: int) -> np.ndarray:
        options = SampleOptions(sampler=sampler, steps=2, attempt=attempt)
        return model.sample([3], 0, cond, options).images

    first, again = draw(1), draw(1)
    assert np.array_equal(first, again) and not np.array_equal(first, draw(0))
