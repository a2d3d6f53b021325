"""The class runs of a per_class DCGAN and their merge (suite/generative/per_class.py): one config
per class, and a merge that checks every part and refuses parts of different runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from suite.cli import main
from suite.errors import ConfigError, DataError
from suite.generative.base import Conditions, SampleOptions
from suite.generative.export import export_generator, load_generator
from suite.generative.families import build_generator
from suite.generative.per_class import class_configs, merge_class_exports, split_digest
from suite.launch.submit import Resources, submit
from suite.schema import load_config
from tests.unit.data.helpers import make_shard_set

REPO = Path(__file__).resolve().parents[3]
DCGAN = str(REPO / "configs/generator/tiny_dcgan.yaml")
PER_CLASS = ["model.mode=per_class", "model.num_classes=3"]
NAMES = ["a", "b", "c"]
GAN = SampleOptions(sampler="gan", steps=1)


def part(root: Path, cls: int, *extra: str, provenance: dict | None = None) -> Path:
    """A single-class export as a class run writes it (the weights are an init from (0, cls))."""
    torch.manual_seed(cls)
    cfg = load_config(DCGAN, [*PER_CLASS, *extra])
    model = build_generator(cfg.model)
    model.bind_data(NAMES, [cls])
    meta = {"class_split_digest": split_digest(cfg), "data_digest": "d", "step": 2}
    export_generator(
        model.eval(), root / str(cls) / "export", {**meta, **(provenance or {})}, NAMES
    )
    return root / str(cls)


def test_class_configs_give_each_class_its_run_folder(tmp_path: Path) -> None:
    shards = make_shard_set(tmp_path / "s", n=6, classes=("a", "Viral Pneumonia"))
    cfg = load_config(
        DCGAN, ["model.mode=per_class", "model.num_classes=2", f"data.shards={shards}"]
    )
    configs = class_configs(cfg)
    assert [(c.data.classes, c.run.name) for c in configs] == [
        (["a"], "tiny-dcgan/classes/0-a"),
        (["Viral Pneumonia"], "tiny-dcgan/classes/1-Viral_Pneumonia"),
    ]
    assert len({split_digest(c) for c in configs}) == 1 and cfg.data.classes is None
    cfg.data.classes = ["Viral Pneumonia"]
    assert [c.run.name for c in class_configs(cfg)] == ["tiny-dcgan/classes/1-Viral_Pneumonia"]


def test_class_configs_refuse_a_model_that_is_not_a_per_class_dcgan(tmp_path: Path) -> None:
    shards = make_shard_set(tmp_path / "s", n=6)
    with pytest.raises(ConfigError, match="model is kind=dcgan mode=unconditional") as err:
        class_configs(load_config(DCGAN, [f"data.shards={shards}"]))
    assert "model.mode=per_class" in err.value.fix
    with pytest.raises(DataError, match="model.num_classes=2 but .* has 3 classes"):
        class_configs(load_config(DCGAN, ["model.mode=per_class", "model.num_classes=2",
                                          f"data.shards={shards}"]))  # fmt: skip


def test_merge_takes_each_class_from_its_part(tmp_path: Path) -> None:
    parts = [part(tmp_path, c) for c in range(3)]
    merge_class_exports(parts, tmp_path / "run")
    merged, _ = load_generator(tmp_path / "run")
    assert merged.trained_classes() == [0, 1, 2] and merged.class_names == NAMES
    labels = np.array([0, 1, 2])
    rows = merged.sample(range(3), 0, Conditions(labels=labels), GAN).images
    for c, path in enumerate(parts):
        alone, _ = load_generator(path)
        own = alone.sample([c], 0, Conditions(labels=labels[c : c + 1]), GAN).images[0]
        assert np.array_equal(own, rows[c])
    meta = json.loads((tmp_path / "run" / "export" / "synmed-export.json").read_text())
    assert [p["classes"] for p in meta["provenance"]["merged_from"]] == [["a"], ["b"], ["c"]]


@pytest.mark.parametrize(
    ("second", "message"),
    [
        (lambda root: part(root, 1, "model.latent_dim=8"), "differ in model, class_split_digest"),
        (lambda root: part(root, 1, "train.lr=1e-3"), "differ in class_split_digest"),
        (lambda root: part(root, 1, provenance={"step": 3}), "differ in step"),
        (lambda root: part(root, 1, provenance={"data_digest": "e"}), "differ in data_digest"),
        (lambda root: part(root / "again", 0), "both trained class a"),
        (lambda root: root / "missing", "missing does not exist: the class run did not finish"),
    ],
    ids=["model", "train-config", "step", "data", "same-class", "missing"],
)
def test_merge_refuses_parts_of_different_runs(tmp_path: Path, second, message: str) -> None:
    first = part(tmp_path, 0)
    with pytest.raises(DataError, match=message) as err:
        merge_class_exports([first, second(tmp_path)], tmp_path / "run")
    assert "merge" in err.value.fix or "train that class" in err.value.fix
    assert not (tmp_path / "run").exists()  # nothing written


def test_merge_checks_each_part_against_its_digests(tmp_path: Path) -> None:
    parts = [part(tmp_path, c) for c in range(2)]
    weights = parts[1] / "export" / "generator.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(DataError, match="generator.safetensors is missing or does not match"):
        merge_class_exports(parts, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_the_merge_command_refuses_mismatched_parts_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parts = [part(tmp_path, 0), part(tmp_path, 1, "model.latent_dim=8")]
    run = tmp_path / "run"
    assert main(["generator", "merge-classes", str(run), *map(str, parts)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "differ in model" in err[0] and err[1].startswith("  fix: merge")
    assert not run.exists()
    # without parts: every RUN/classes/* (here the two good ones)
    good = tmp_path / "good"
    for c in (0, 1):
        part(good / "classes", c)
    assert main(["generator", "merge-classes", str(good)]) == 0
    merged, _ = load_generator(good)
    assert merged.trained_classes() == [0, 1]


def test_submit_refuses_each_class_with_a_sweep(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--each-class with --array"):
        submit("train-generator", DCGAN, [f"run.out_dir={tmp_path}"], Resources(),
               sweep="run.seed=0,1", each_class=True)  # fmt: skip
    assert not any(tmp_path.iterdir())
