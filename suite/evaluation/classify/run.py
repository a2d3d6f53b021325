"""``synmed evaluate classify``: every protocol, every seed, one result folder.

Order of work, so that bad input never costs training time and never leaves partial output:

1. check the config values, open and check the data (:mod:`.data`) and the backbone
   (:mod:`.backbone`): each problem is one :class:`~suite.errors.SynmedError`;
2. plan every seed's training rows (label fraction, synthetic draw) from labels alone;
3. inside a staging folder (:func:`suite.data.writer.staged_output`): extract frozen features once
   for the union of the rows any seed needs, run the feature protocols (linear probe, kNN, shallow
   heads) and fine-tuning per seed, write ``result.json`` and the CSV tables; the folder becomes
   ``out`` only when all of it succeeded.

``result.json`` (:mod:`suite.artifacts.results`, read by ``synmed report``)::

    {"schema": "synmed-result", "version": 1, "evaluator": "classify", "task": "classify",
     "inputs": {"shards", "backbone", ["test_shards"], ["synthetic"]: {"path", "sha256"}},
     "settings": {"config", "config_digest"},
     "metrics": {"linear_probe.accuracy": {"mean", "std", "values": [per seed]}, ...},
     "per_class": {protocol: {class: {metric: {"mean", "std", "values"}}}},
     "confusion": {protocol: {"classes", "kind", "total", "per_seed"}},
     "context": {"backbone", "seeds", "split_sizes", "label_fraction", "synthetic", ...}}
"""

from __future__ import annotations

import csv
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from suite.artifacts.results import (
    RESULT_FILE,
    InputRef,
    Result,
    shard_input,
    summarize,
    write_result,
)
from suite.config import config_digest, to_dict
from suite.data.writer import staged_output
from suite.errors import ConfigError
from suite.evaluation.classify.backbone import ResolvedBackbone, resolve_backbone
from suite.evaluation.classify.config import FEATURE_PROTOCOLS, ClassifyConfig
from suite.evaluation.classify.data import (
    EvaluationData,
    Rows,
    label_fraction,
    open_evaluation_data,
    synthetic_draw,
)
from suite.evaluation.classify.features import FeatureTable, extract_features
from suite.evaluation.classify.finetune import export_classifier, finetune, make_preprocess, predict
from suite.evaluation.classify.knn import knn_scores
from suite.evaluation.classify.metrics import Scores, score
from suite.evaluation.classify.probe import linear_probe
from suite.evaluation.classify.shallow import SHALLOW, shallow_scores

RESULT = RESULT_FILE


def _check_values(cfg: ClassifyConfig) -> None:
    """Values the schema's types cannot rule out, each one error naming the key."""
    problems = []
    if not cfg.protocols:
        problems.append(("protocols", "is empty", "list at least one of: linear_probe, knn, ..."))
    if len(set(cfg.protocols)) != len(cfg.protocols):
        problems.append(("protocols", f"= {cfg.protocols} repeats a protocol", "list each once"))
    if not cfg.seeds or len(set(cfg.seeds)) != len(cfg.seeds):
        problems.append(("seeds", f"= {cfg.seeds}", "list distinct integer seeds, e.g. [0, 1, 2]"))
    positive = {
        "batch_size": cfg.batch_size,
        "knn.k": cfg.knn.k,
        "linear_probe.epochs": cfg.linear_probe.epochs,
        "linear_probe.batch_size": cfg.linear_probe.batch_size,
        "finetune.epochs": cfg.finetune.epochs,
        "finetune.batch_size": cfg.finetune.batch_size,
        "finetune.patience": cfg.finetune.patience,
    }
    for key, value in positive.items():
        if value < 1:
            problems.append((key, f"= {value}", "use a value of at least 1"))
    for key, value in {
        "knn.temperature": cfg.knn.temperature,
        "linear_probe.lr": cfg.linear_probe.lr,
        "finetune.lr": cfg.finetune.lr,
    }.items():
        if not value > 0:
            problems.append((key, f"= {value}", "use a positive value"))
    if problems:
        key, what, fix = problems[0]
        raise ConfigError(f"config key {key!r} {what}", fix)


class _Plan:
    """Per seed: positions of the training rows used, real and synthetic."""

    def __init__(self, cfg: ClassifyConfig, data: EvaluationData) -> None:
        self.train: dict[int, np.ndarray] = {}
        self.synthetic: dict[int, np.ndarray] = {}
        for seed in cfg.seeds:
            train = label_fraction(data.train.labels, cfg.data.label_fraction, seed)
            self.train[seed] = train
            if data.synthetic is not None and cfg.data.synthetic is not None:
                self.synthetic[seed] = synthetic_draw(
                    cfg.data.synthetic,
                    data.synthetic.labels,
                    data.train.labels[train],
                    data.class_names,
                    seed,
                )
            else:
                self.synthetic[seed] = np.zeros(0, np.int64)

    def union(self, which: dict[int, np.ndarray]) -> np.ndarray:
        return np.unique(np.concatenate(list(which.values()))) if which else np.zeros(0, np.int64)


def _extractor(backbone: ResolvedBackbone, batch_size: int) -> Callable[..., FeatureTable]:
    """Features of rows by the one frozen copy of the backbone."""
    net, preprocess = backbone.build(), make_preprocess(backbone)

    def features(rows: Rows, positions: np.ndarray) -> FeatureTable:
        feats = extract_features(net, preprocess, rows.subset(positions), batch_size)
        return FeatureTable(positions, feats)

    return features


def run_classify(
    cfg: ClassifyConfig,
    out: Path | None = None,
    *,
    overwrite: bool = False,
    log: Callable[[str], None] = lambda m: print(m, file=sys.stderr),
) -> dict[str, Any]:
    """Run the evaluation ``cfg`` describes into ``out`` (default ``run.out_dir/run.name``)."""
    out = Path(out) if out is not None else cfg.run.out_dir / cfg.run.name
    _check_values(cfg)
    data = open_evaluation_data(cfg.data)
    backbone = resolve_backbone(
        cfg.backbone, channels=data.channels, image_size=data.image_size, seed=cfg.run.seed
    )
    plan = _Plan(cfg, data)
    k = len(data.class_names)
    started = time.monotonic()
    synthetic = cfg.data.synthetic.shards if cfg.data.synthetic is not None else None
    inputs = (cfg.data.shards, cfg.data.test_shards, synthetic, getattr(cfg.backbone, "path", None))
    with staged_output(out, overwrite=overwrite, inputs=inputs) as stage:
        results: dict[str, dict[int, Scores]] = {p: {} for p in cfg.protocols}
        selection: dict[str, dict[int, Any]] = {p: {} for p in cfg.protocols}
        feature_protocols = [p for p in cfg.protocols if p in FEATURE_PROTOCOLS]
        timing: dict[str, float] = {}
        if feature_protocols:
            t0 = time.monotonic()
            log(f"extracting {backbone.spec.arch} features (once for all feature protocols)")
            features = _extractor(backbone, cfg.batch_size)
            train_table = features(data.train, plan.union(plan.train))
            val_x = features(data.val, np.arange(len(data.val))).features
            test_x = features(data.test, np.arange(len(data.test))).features
            synth_table = None
            if data.synthetic is not None:
                synth_table = features(data.synthetic, plan.union(plan.synthetic))
            timing["feature_extraction_s"] = time.monotonic() - t0
        for seed in cfg.seeds:
            train_pos, synth_pos = plan.train[seed], plan.synthetic[seed]
            y_train = data.train.labels[train_pos]
            if data.synthetic is not None:
                y_train = np.concatenate([y_train, data.synthetic.labels[synth_pos]])
            if feature_protocols:
                x_train = train_table.take(train_pos)
                if synth_table is not None:
                    x_train = np.concatenate([x_train, synth_table.take(synth_pos)])
            for protocol in cfg.protocols:
                t0 = time.monotonic()
                log(f"seed {seed}: {protocol}")
                if protocol == "linear_probe":
                    probs, chosen = linear_probe(
                        x_train,
                        y_train,
                        val_x,
                        data.val.labels,
                        test_x,
                        num_classes=k,
                        cfg=cfg.linear_probe,
                        seed=seed,
                    )
                    selection[protocol][seed] = chosen
                elif protocol == "knn":
                    probs = knn_scores(
                        x_train,
                        y_train,
                        test_x,
                        num_classes=k,
                        k=cfg.knn.k,
                        temperature=cfg.knn.temperature,
                    )
                elif protocol in SHALLOW:
                    probs = shallow_scores(
                        protocol,
                        x_train,
                        y_train,
                        test_x,
                        num_classes=k,
                        cfg=cfg.shallow,
                        seed=seed,
                    )
                else:  # finetune
                    parts = [data.train.subset(train_pos)]
                    if data.synthetic is not None:
                        parts.append(data.synthetic.subset(synth_pos))
                    model, chosen = finetune(
                        backbone,
                        parts,
                        data.val.subset(np.arange(len(data.val))),
                        num_classes=k,
                        cfg=cfg.finetune,
                        seed=seed,
                    )
                    probs, _ = predict(
                        model, data.test.subset(np.arange(len(data.test))), cfg.finetune.batch_size
                    )
                    selection[protocol][seed] = {
                        key: v for key, v in chosen.items() if key != "history"
                    }
                    if cfg.finetune.export:
                        export_classifier(
                            model,
                            backbone,
                            stage / "finetune" / f"seed-{seed}",
                            class_names=data.class_names,
                            multilabel=data.multilabel,
                            data_shape=(data.channels, data.image_size, data.image_size),
                            provenance={
                                "backbone": backbone.provenance,
                                "seed": seed,
                                "trained_on": data.train.name,
                                **selection[protocol][seed],
                            },
                            history=chosen["history"],
                        )
                results[protocol][seed] = score(data.test.labels, probs, data.class_names)
                timing[f"{protocol}.seed{seed}_s"] = time.monotonic() - t0
        result = write_result(
            stage, _assemble(cfg, data, backbone, plan, results, selection, timing, started)
        )
        write_tables(stage, result)
    log(f"wrote {out / RESULT}")
    return result


def _assemble(
    cfg: ClassifyConfig,
    data: EvaluationData,
    backbone: ResolvedBackbone,
    plan: _Plan,
    results: dict[str, dict[int, Scores]],
    selection: dict[str, dict[int, Any]],
    timing: dict[str, float],
    started: float,
) -> Result:
    metrics: dict[str, Any] = {}
    per_class: dict[str, Any] = {}
    confusion: dict[str, Any] = {}
    for protocol, by_seed in results.items():
        runs = [by_seed[s] for s in cfg.seeds]
        for name in runs[0].metrics:
            metrics[f"{protocol}.{name}"] = summarize([r.metrics[name] for r in runs])
        per_class[protocol] = {
            cls: {m: summarize([r.per_class[cls][m] for r in runs]) for m in runs[0].per_class[cls]}
            for cls in data.class_names
        }
        total = np.sum([np.asarray(r.confusion) for r in runs], axis=0).tolist()
        confusion[protocol] = {
            "classes": data.class_names,
            # single: rows true, columns predicted; multilabel: per class [[TN, FP], [FN, TP]]
            "kind": "multilabel" if data.multilabel else "single",
            "total": total,
            "per_seed": {str(s): by_seed[s].confusion for s in cfg.seeds},
        }
    first = cfg.seeds[0]
    synthetic = None
    if cfg.data.synthetic is not None and data.synthetic is not None:
        added = {
            str(s): np.bincount(data.synthetic.labels[p], minlength=len(data.class_names)).tolist()
            for s, p in plan.synthetic.items()
        }
        synthetic = {
            "shards": str(cfg.data.synthetic.shards),
            "mode": cfg.data.synthetic.mode,
            "ratio": cfg.data.synthetic.ratio,
            "per_class": cfg.data.synthetic.per_class,
            "classes": cfg.data.synthetic.classes,
            "added_per_class": added,  # per seed, in class order
        }
    inputs = {"shards": shard_input(cfg.data.shards), "backbone": backbone_input(backbone)}
    if cfg.data.test_shards is not None:
        inputs["test_shards"] = shard_input(cfg.data.test_shards)
    if cfg.data.synthetic is not None and cfg.data.synthetic.shards is not None:
        inputs["synthetic"] = shard_input(cfg.data.synthetic.shards)
    return Result(
        task="classify",
        metrics=metrics,
        per_class=per_class,
        extra={"confusion": confusion},
        inputs=inputs,
        settings={"config": to_dict(cfg), "config_digest": config_digest(cfg)},
        context={
            "backbone": backbone.provenance,
            "adapt_channels": backbone.adapt,
            "protocols": list(cfg.protocols),
            "seeds": list(cfg.seeds),
            "class_names": data.class_names,
            "multilabel": data.multilabel,
            "data": {"shards": str(cfg.data.shards), "test": data.test.name},
            "split_sizes": {
                "train": len(plan.train[first]),
                "train_synthetic": len(plan.synthetic[first]),
                "train_available": len(data.train),
                "val": len(data.val),
                "test": len(data.test),
            },
            "label_fraction": cfg.data.label_fraction,
            "synthetic": synthetic,
            "selection": {
                p: {str(s): v for s, v in sel.items()} for p, sel in selection.items() if sel
            },
            "timing_s": {**timing, "total": time.monotonic() - started},
        },
    )


def backbone_input(backbone: ResolvedBackbone) -> InputRef:
    """The starting weights as an input: the export folder or weights file and its digest; a
    random init is named by its arch and seed (its weights are a function of them)."""
    p = backbone.provenance
    if backbone.source is None:
        return InputRef(f"random:{p['arch']}:seed{p.get('init_seed')}", None)
    return InputRef(
        str(Path(backbone.source).resolve()), p.get("export_sha256", p.get("weights_sha256"))
    )


def _fmt(value: Any) -> Any:
    return "" if value is None or (isinstance(value, float) and not math.isfinite(value)) else value


def write_tables(folder: Path, result: dict[str, Any]) -> None:
    """metrics.csv, per_class.csv and one confusion_<protocol>.csv (summed over seeds)."""
    with open(folder / "metrics.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["protocol", "metric", "mean", "std", "n_seeds", "values"])
        for key, s in result["metrics"].items():
            protocol, name = key.split(".", 1)
            values = " ".join(str(_fmt(v)) for v in s["values"])
            w.writerow([protocol, name, _fmt(s["mean"]), _fmt(s["std"]), len(s["values"]), values])
    with open(folder / "per_class.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["protocol", "class", "precision", "recall", "f1", "auc", "support"])
        for protocol, classes in result["per_class"].items():
            for cls, m in classes.items():
                w.writerow(
                    [protocol, cls]
                    + [_fmt(m[k]["mean"]) for k in ("precision", "recall", "f1", "auc", "support")]
                )
    for protocol, c in result["confusion"].items():
        with open(folder / f"confusion_{protocol}.csv", "w", newline="") as f:
            w = csv.writer(f)
            if c["kind"] == "single":
                w.writerow(["true \\ predicted", *c["classes"]])
                for cls, row in zip(c["classes"], c["total"]):
                    w.writerow([cls, *row])
            else:
                w.writerow(["class", "tn", "fp", "fn", "tp"])
                for cls, m in zip(c["classes"], c["total"]):
                    w.writerow([cls, m[0][0], m[0][1], m[1][0], m[1][1]])
