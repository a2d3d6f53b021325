"""A per-class DCGAN trained one class per run, as seed 001 did: the runs of ``--each-class``
(in-process one after another, or one SLURM array task each) and the merge of their exports into
the one per_class export that `synmed sample` reads.

Class c's run is the run's config with ``data.classes=[c]`` and ``run.name=NAME/classes/c``: its
generator's init and data order depend on (config, c) alone, so a run in-process and an array
task give bit-identical weights. The joint per_class run (no ``--each-class``) trains every pair
on shared batches instead and is not identical to either.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from suite.artifacts.digests import sha256_json
from suite.config import to_dict
from suite.data.shards import read_manifest
from suite.errors import ConfigError, DataError
from suite.schema import SuiteConfig

CLASSES_DIR = "classes"
MERGE_FIX = (
    "merge the parts of one --each-class run (RUN/classes/*), each trained from the same config "
    "to the same step; retrain the odd part with that config"
)


def split_digest(cfg: SuiteConfig) -> str:
    """The digest of everything in a config but what tells its class runs apart (``run.name``,
    ``data.classes``): the parts of one merge must agree on it."""
    data = to_dict(cfg)
    data["run"].pop("name", None)
    data["data"].pop("classes", None)
    return sha256_json(data)


def part_dir_name(index: int, name: str) -> str:
    """``0-COVID``; characters a folder or SLURM log name would trip on become ``_``."""
    return f"{index}-{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}"


def class_configs(cfg: SuiteConfig) -> list[SuiteConfig]:
    """One config per class to train (``data.classes``, else every class of ``data.shards``),
    each with its own run folder ``RUN/classes/<id>-<name>``."""
    model = cfg.model
    if model is None or model.kind != "dcgan" or getattr(model, "mode", "") != "per_class":
        raise ConfigError(
            "--each-class trains one DCGAN per class; model is "
            + (f"kind={model.kind} mode={getattr(model, 'mode', '-')}" if model else "not set"),
            "set model.kind=dcgan model.mode=per_class (or drop --each-class)",
        )
    if cfg.data.shards is None:
        raise ConfigError("data.shards is not set", "pass data.shards=SHARDS")
    names = read_manifest(cfg.data.shards).class_names
    if model.num_classes != len(names):
        raise DataError(
            f"model.num_classes={model.num_classes} but {cfg.data.shards} has {len(names)} classes "
            f"({', '.join(names)})",
            f"set model.num_classes={len(names)}",
        )
    wanted = cfg.data.classes if cfg.data.classes is not None else names
    unknown = [c for c in wanted if c not in names]
    if unknown:
        raise ConfigError(
            f"data.classes names {', '.join(unknown)}, not a class of {cfg.data.shards}",
            f"use class names from: {', '.join(names)}",
        )
    configs = []
    for index, name in enumerate(names):
        if name not in wanted:
            continue
        part = copy.deepcopy(cfg)
        part.data.classes = [name]
        part.run.name = f"{cfg.run.name}/{CLASSES_DIR}/{part_dir_name(index, name)}"
        configs.append(part)
    return configs


def part_runs(cfg: SuiteConfig) -> list[Path]:
    return [Path(c.run.out_dir) / c.run.name for c in class_configs(cfg)]


def merge_class_exports(parts: Sequence[Path], out: Path) -> str:
    """Merge single-class per_class DCGAN exports (run folders or export/ folders) into
    ``out/export``; every part's files are checked against their digests first, and parts of
    different configs, data, steps or overlapping classes are refused before anything is
    written. Returns the merged export's digest."""
    from suite.artifacts.exports import read_export
    from suite.generative.dcgan import DCGAN
    from suite.generative.export import export_generator, load_generator

    if not parts:
        raise ConfigError("no parts to merge", "pass the class runs, e.g. RUN/classes/*")
    out = Path(out)
    read: list[tuple[Path, Any, str]] = []
    for part in parts:
        if not Path(part).exists():
            raise DataError(
                f"{part} does not exist: the class run did not finish (or never started)",
                "train that class (synmed train generator CONFIG data.classes=[NAME] "
                "run.name=RUN/classes/ID-NAME), then merge again",
            )
        read.append(read_export(Path(part), "generator"))
    first_folder, first, _ = read[0]
    keys = ("class_split_digest", "data_digest", "step")
    for folder, meta, _ in read:
        if meta.family != "dcgan" or meta.body["model"].get("mode") != "per_class":
            raise DataError(
                f"{folder} is a {meta.family} export (mode {meta.body['model'].get('mode')}), "
                "not a per_class DCGAN's",
                MERGE_FIX,
            )
        if "class_split_digest" not in meta.provenance:
            raise DataError(f"{folder} was not trained by a per_class DCGAN run", MERGE_FIX)
        differ = [k for k in ("model", "class_names") if meta.body.get(k) != first.body.get(k)] + [
            k for k in keys if meta.provenance.get(k) != first.provenance.get(k)
        ]
        if differ:
            raise DataError(
                f"{folder} and {first_folder} differ in {', '.join(differ)}: they are not parts "
                "of one --each-class run",
                MERGE_FIX,
            )
    models = [load_generator(folder)[0] for folder, _, _ in read]
    names = first.body["class_names"]
    owner: dict[int, Path] = {}
    for (folder, _, _), model in zip(read, models):
        for c in model.trained_classes():
            if c in owner:
                raise DataError(
                    f"{folder} and {owner[c]} both trained class {names[c]}",
                    "merge one part per class",
                )
            owner[c] = folder
    classes = [[names[c] for c in m.trained_classes()] for m in models]
    merged = models[0]
    assert isinstance(merged, DCGAN)
    state = merged.G.state_dict()
    for model in models[1:]:
        theirs = model.G.state_dict()
        for c in model.trained_classes():
            prefix = f"nets.{c}."
            state.update({k: v for k, v in theirs.items() if k.startswith(prefix)})
    state["trained"] = state["trained"].zero_()
    state["trained"][sorted(owner)] = 1.0
    merged.G.load_state_dict(state)
    provenance = {
        **{k: v for k, v in first.provenance.items() if k not in ("run", "config_digest")},
        "run": str(out.resolve()),
        "merged_from": [
            {
                "export": str(folder.resolve()),
                "sha256": digest,
                "classes": part_classes,
            }
            for (folder, _, digest), part_classes in zip(read, classes)
        ],
    }
    out.mkdir(parents=True, exist_ok=True)
    return export_generator(merged, out / "export", provenance, class_names=names)


def train_each_class(cfg: SuiteConfig, **options: Any) -> dict[str, Any]:
    """Train the class runs of ``cfg`` one after another in this process, then merge them into
    ``RUN/export``. A run stopped by a signal returns its result at once (nothing is merged): the
    same command with ``--resume`` or ``--auto-resume`` continues it and skips no class."""
    from suite.generative.train import train_generator

    configs = class_configs(cfg)
    results = []
    for part in configs:
        result = train_generator(part, **options)
        if "stopped_at" in result:
            return result
        results.append(result)
    if not results or not results[0]:
        return {}  # not the main process: rank 0 merges and reports
    run = Path(cfg.run.out_dir) / cfg.run.name
    merge_class_exports([Path(c.run.out_dir) / c.run.name for c in configs], run)
    return {
        "model": results[0]["model"],
        "steps": results[0]["steps"],
        "run": str(run),
        "export": str(run / "export"),
        "classes": [r["run"] for r in results],
    }
