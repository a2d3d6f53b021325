"""Stage outputs shaped as their writers write them, for the report tests.

The classification result is computed with the evaluator's own scoring (``score``, ``summarize``)
on fixed predictions, so its keys are exactly those of ``suite/evaluation/classify/run.py``; every
result is written through the result schema's writer, as the evaluators write theirs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from suite.artifacts.results import Result, summarize, write_result
from suite.data.writer import ShardSetWriter
from suite.evaluation.classify.metrics import score
from tests.unit.data.helpers import pattern

CLASSES = ["a", "b", "c"]


def write_png(path: Path, size: int = 24) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.arange(size * size, dtype=np.uint8).reshape(size, size)).save(path)
    return path


def classify_result(folder: Path, seeds: tuple[int, ...] = (0, 1)) -> dict:
    """A classify result.json of two protocols over ``seeds`` (predictions differ per seed)."""
    y = np.arange(30) % 3
    runs: dict[str, list] = {"linear_probe": [], "knn": []}
    for protocol, noise in (("linear_probe", 1.2), ("knn", 2.0)):
        for seed in seeds:
            rng = np.random.default_rng(seed + (10 if protocol == "knn" else 0))
            probs = rng.random((30, 3)) * noise
            probs[np.arange(30), y] += 0.5
            runs[protocol].append(score(y, probs / probs.sum(1, keepdims=True), CLASSES))
    result = Result(
        task="classify",
        metrics={
            f"{p}.{m}": summarize([r.metrics[m] for r in rs])
            for p, rs in runs.items()
            for m in rs[0].metrics
        },
        per_class={
            p: {
                c: {m: summarize([r.per_class[c][m] for r in rs]) for m in rs[0].per_class[c]}
                for c in CLASSES
            }
            for p, rs in runs.items()
        },  # fmt: skip
        extra={
            "confusion": {
                p: {
                    "classes": CLASSES,
                    "kind": "single",
                    "total": np.sum([r.confusion for r in rs], axis=0).tolist(),
                    "per_seed": {str(s): r.confusion for s, r in zip(seeds, rs)},
                }
                for p, rs in runs.items()
            }
        },
        context={
            "backbone": {"kind": "export", "arch": "resnet18", "path": "/x/pretrain/real/export"},
            "seeds": list(seeds),
            "split_sizes": {"train": 24, "train_synthetic": 0, "val": 6, "test": 30},
            "label_fraction": 1.0,
            "synthetic": None,
        },
    )
    return write_result(folder, result)


def segment_result(folder: Path, dice: tuple[float, ...] = (0.454, 0.488)) -> dict:
    """A segment result.json (two classes), its per-case CSV and case figure."""

    def summary(values: tuple[float, ...]) -> dict:
        return {
            "mean": float(np.mean(values)),
            "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
            "values": list(values),
            "case_std": 0.1,
        }

    metrics = {m: summary(tuple(d * k for d in dice)) for m, k in
               (("dice", 1.0), ("iou", 0.7), ("precision", 1.1), ("recall", 0.9), ("hd95", 9.0))}  # fmt: skip
    result = Result(
        task="segment",
        metrics=metrics,
        per_class={
            "gm": {m: summary(tuple(v * 1.5 for v in s["values"])) for m, s in metrics.items()},
            "wm": {m: summary(tuple(v * 0.4 for v in s["values"])) for m, s in metrics.items()},
        },
        extra={"per_case": "per_case.csv", "figure": "cases.png"},
        context={
            "encoder": {"encoder": "conv", "channels": [16, 32], "init": "random"},
            "seeds": list(range(len(dice))),
            "split_sizes": {"train": 106, "val": 13, "test": 14},
            "training_data": {"kind": "real", "real": "shards/mni152"},
            "report_split": "test",
        },
    )
    written = write_result(folder, result)
    (folder / "per_case.csv").write_text("seed,case,class,dice\n0,1,gm,0.5\n")
    write_png(folder / "cases.png")
    return written


def generator_result(
    folder: Path,
    real: Path,
    fake: Path,
    fid: float,
    *,
    per_class: bool = True,
    fid_768: bool = False,
) -> dict:
    """A generator result.json as evaluate_generator writes it: encoders inception and random:32
    (and inception:768 with ``fid_768``; without it, the note that says why it is missing)."""
    result = Result(
        task="generator",
        metrics={
            "fid": fid,
            "fd_random_32": fid / 10,
            "kid_mean": 0.0123,
            "kid_std": 0.0021,
            "precision": 0.7,
            "recall": 0.55,
            "density": 0.9,
            "coverage": 0.8,
        },
        per_class={
            c: {
                "fid": None if c == "c" else fid + i,
                "fd_random_32": 1.0 + i,
                "n_real": 4,
                "n_fake": 1 if c == "c" else 5,
            }
            for i, c in enumerate(CLASSES)
        }
        if per_class
        else {},  # fmt: skip
        settings={"seed": 0, "encoders": ["inception", "random:32"]},
        context={
            "real": str(real),
            "fake": str(fake),
            "encoders": [{"spec": "inception", "kind": "inception"}, {"spec": "random:32"}],
            "n_real": 12,
            "n_fake": 12,
            "split": "train",
            "fid_768_note": None if fid_768 else "no 768-d FID (seed 001's): it was not asked for",
        },
    )
    if fid_768:
        result.metrics["fid_768"] = fid / 100
        for i, entry in enumerate(result.per_class.values()):
            entry["fid_768"] = 0.5 + i
    return write_result(folder, result)


def training_run(folder: Path, *, pretrain: bool, steps: int = 50) -> dict:
    """summary.json + metrics.jsonl of a training run (kNN records for pretraining)."""
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for step in range(10, steps + 1, 10):
        records.append({"step": step, "epoch": step / 25, "loss": 2.0 / step, "lr": 1e-3})
        if pretrain and step % 20 == 0:
            records.append({"step": step, "epoch": step / 25, "knn_accuracy": 0.3 + step / 1000})
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    summary = {"run": str(folder), "steps": steps, "epochs": steps / 25, "world_size": 1,
               "global_batch": 8, "final_loss": [r["loss"] for r in records if "loss" in r][-1],
               "seconds": 12.5}  # fmt: skip
    summary |= (
        {
            "method": "simclr",
            "arch": "resnet18",
            "mix": {"real": 0.5, "synthetic": 0.5},
            "knn_accuracy": 0.35,
        }  # fmt: skip
        if pretrain
        else {"model": "ddpm_lucidrains"}
    )
    (folder / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def sampled_set(folder: Path, n: int = 12, steps: int = 20, sampler: str = "ddim") -> Path:
    """A synthetic shard set as ``synmed sample`` leaves it: manifest attrs, summary, grid."""
    folder.mkdir(parents=True, exist_ok=True)
    attrs = {"source": "synthetic", "sampler": sampler, "sampling_steps": steps,
             "class_names": CLASSES, "label_kind": "multiclass"}  # fmt: skip
    writer = ShardSetWriter(folder, attrs, shard_size=8)
    for i in range(n):
        writer.add({"images": 255 - pattern(i, 16), "index": i, "labels": i % 3})
    writer.close()
    summary = {"images": n, "shards": 2, "sampler": sampler, "sampling_steps": steps,
               "guidance_scale": 1.0, "seed": 0, "workers": 1, "images_per_s": 3.5,
               "checkpoint": "/runs/generator"}  # fmt: skip
    (folder / "sample_summary.json").write_text(json.dumps(summary, indent=1))
    write_png(folder / "samples.png")
    return folder


def cluster_output(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    summary = {"shards": "/runs/sample", "images": 12, "k": 3, "seed": 0,
               "encoder": {"spec": "random:32", "kind": "random"}, "cluster_sizes": [5, 4, 3]}  # fmt: skip
    (folder / "cluster_summary.json").write_text(json.dumps(summary, indent=1))
    (folder / "clusters.json").write_text(json.dumps({"k": 3, "clusters": []}))
    write_png(folder / "embedding.png")
    return folder


def sweep_result(folder: Path, steps: tuple[int, ...] = (100, 200, 300)) -> dict:
    """A self_validate_sweep result.json: each step's generated set scored with the evaluator's
    own scoring on fixed predictions that improve with the step."""
    y = np.arange(30) % 3
    scored = {}
    for n, step in enumerate(steps):
        probs = np.random.default_rng(step).random((30, 3))
        probs[np.arange(30), y] += 0.4 * n
        scored[step] = score(y, probs, CLASSES)
    key = "step_{}".format  # suite/evaluation/classify/sweep.py's step_key
    result = Result(
        task="self_validate_sweep",
        metrics={
            f"{key(step)}.{m}": summarize([v]) for step, s in scored.items()
            for m, v in s.metrics.items()
        },
        per_class={
            key(step): {c: {m: summarize([v]) for m, v in vals.items()}
                        for c, vals in s.per_class.items()}
            for step, s in scored.items()
        },
        context={"run": "/x/runs/tiny-acgan", "steps": list(steps), "images_per_step": 30,
                 "classifier": "/x/finetune/seed-0", "sampler": "gan", "sampling_steps": 1},
    )  # fmt: skip
    return write_result(folder, result)
