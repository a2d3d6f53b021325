"""The report's tables: built from what :mod:`.discover` found, written as CSV, LaTeX and Markdown.

Every table carries its own context as columns (run, seeds, encoder or backbone, reference set,
split sizes), so a CSV or LaTeX file copied out of the report still says what it measured. CSV
keeps full precision (``repr`` of each float: numbers round-trip exactly); a mean ± std column
becomes two CSV columns, ``<key>_mean`` and ``<key>_std``. LaTeX uses booktabs and ``$m \\pm s$``.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from suite.artifacts.results import MeanStd
from suite.evaluation.classify.sweep import step_key
from suite.report.discover import EvalResult, Found, generator_sampling

Cell = str | int | float | MeanStd | None


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    label: str
    digits: int = 3  # decimals shown in Markdown and LaTeX (CSV keeps every digit)


@dataclass(slots=True)
class Table:
    """Rows of cells by column key; ``name`` is the file stem under ``tables/``."""

    name: str
    title: str
    caption: str
    columns: list[Column]
    rows: list[dict[str, Cell]] = field(default_factory=list)

    def paired(self, key: str) -> bool:
        """Whether column ``key`` holds mean ± std (two CSV columns)."""
        return any(isinstance(row.get(key), MeanStd) for row in self.rows)


# -- rendering -------------------------------------------------------------------------------------


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _raw(x: Any) -> str:
    """A CSV cell: full precision, empty for a missing value."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return ""
    return repr(x) if isinstance(x, float) else str(x)


def write_csv(table: Table, path: Path) -> None:
    header: list[str] = []
    for col in table.columns:
        header += [f"{col.key}_mean", f"{col.key}_std"] if table.paired(col.key) else [col.key]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for row in table.rows:
            cells: list[str] = []
            for col in table.columns:
                value = row.get(col.key)
                if table.paired(col.key):
                    ms = value if isinstance(value, MeanStd) else MeanStd(_num_or_none(value), None)
                    cells += [_raw(ms.mean), _raw(ms.std)]
                else:
                    cells.append(_raw(value))
            w.writerow(cells)


def _num_or_none(x: Any) -> float | None:
    return float(x) if _finite(x) else None


def _number(x: Any, digits: int) -> str | None:
    if isinstance(x, int) and not isinstance(x, bool):
        return str(x)
    return f"{x:.{digits}f}" if _finite(x) else None


def _text(value: Cell, digits: int, *, latex: bool) -> str:
    dash = "--" if latex else "—"
    if isinstance(value, MeanStd):
        mean, std = _number(value.mean, digits), _number(value.std, digits)
        if mean is None:
            return dash
        if std is None:
            return f"${mean}$" if latex else mean
        return f"${mean} \\pm {std}$" if latex else f"{mean} ± {std}"
    if isinstance(value, int | float) and not isinstance(value, bool):
        shown = _number(value, digits)
        return dash if shown is None else shown
    if value is None or value == "":
        return dash
    return latex_escape(str(value)) if latex else markdown_escape(str(value))


_LATEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "·": r"$\cdot$",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX.get(ch, ch) for ch in text)


def markdown_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _numeric(table: Table, key: str) -> bool:
    values = [row.get(key) for row in table.rows if row.get(key) not in (None, "")]
    return bool(values) and all(
        isinstance(v, MeanStd) or (isinstance(v, int | float) and not isinstance(v, bool))
        for v in values
    )


def to_latex(table: Table) -> str:
    """A booktabs ``table`` float (needs ``\\usepackage{booktabs}``)."""
    align = "".join("r" if _numeric(table, c.key) else "l" for c in table.columns)
    lines = [
        "% synmed report; needs \\usepackage{booktabs}",
        "\\begin{table}[t]",
        "\\centering",
        f"\\caption{{{latex_escape(table.caption)}}}",
        f"\\label{{tab:{table.name}}}",
        f"\\begin{{tabular}}{{{align}}}",
        "\\toprule",
        " & ".join(latex_escape(c.label) for c in table.columns) + " \\\\",
        "\\midrule",
    ]
    for row in table.rows:
        cells = [_text(row.get(c.key), c.digits, latex=True) for c in table.columns]
        lines.append(" & ".join(cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}", ""]
    return "\n".join(lines)


def to_markdown(table: Table) -> str:
    header = "| " + " | ".join(markdown_escape(c.label) for c in table.columns) + " |"
    rule = "|" + "|".join("---:" if _numeric(table, c.key) else "---" for c in table.columns) + "|"
    body = [
        "| "
        + " | ".join(_text(row.get(c.key), c.digits, latex=False) for c in table.columns)
        + " |"
        for row in table.rows
    ]
    return "\n".join([header, rule, *body])


def write_table(table: Table, folder: Path) -> dict[str, Path]:
    """``<name>.csv`` and ``<name>.tex`` in ``folder``; returns both paths."""
    csv_path, tex_path = folder / f"{table.name}.csv", folder / f"{table.name}.tex"
    write_csv(table, csv_path)
    tex_path.write_text(to_latex(table))
    return {"csv": csv_path, "tex": tex_path}


# -- context ---------------------------------------------------------------------------------------


def seeds_text(ctx: dict[str, Any]) -> str:
    seeds = ctx.get("seeds")
    text = ",".join(str(s) for s in seeds) if isinstance(seeds, list) else ""
    if ctx.get("pretrain_seeds"):  # a pipeline result merged over pretraining seeds
        text += f" (pretrain {','.join(str(s) for s in ctx['pretrain_seeds'])})"
    return text


def splits_text(sizes: Any) -> str:
    """``train 533, val 67, test 100`` from a split-size dict (non-numbers left out)."""
    if not isinstance(sizes, dict):
        return ""
    return ", ".join(f"{k} {v}" for k, v in sizes.items() if isinstance(v, int))


def backbone_text(prov: Any) -> str:
    """A classify backbone's provenance in a few words: kind, arch and the export folder."""
    if not isinstance(prov, dict):
        return str(prov or "")
    parts = [str(prov.get("kind", "")), str(prov.get("arch", ""))]
    if prov.get("path"):
        path = Path(str(prov["path"]))
        # an SSL export is <run>/export: the run's name is the informative part
        parts.append(f"({path.parent.name if path.name == 'export' else path.name})")
    return " ".join(p for p in parts if p)


def encoder_text(desc: Any) -> str:
    """A segmentation encoder description: name, stem, init (random or ssl:FOLDER)."""
    if not isinstance(desc, dict):
        return str(desc or "")
    init = str(desc.get("init", ""))
    if init.startswith("ssl:"):
        init = "ssl:" + Path(init[4:]).name
    frozen = " frozen" if desc.get("frozen") else ""
    return " ".join(str(p) for p in (desc.get("encoder"), desc.get("stem"), init) if p) + frozen


def _ms(metric: Any) -> MeanStd | None:
    if not isinstance(metric, dict):
        return MeanStd(_num_or_none(metric), None) if _finite(metric) else None
    return MeanStd(_num_or_none(metric.get("mean")), _num_or_none(metric.get("std")))


def _ordered(names: set[str], preferred: tuple[str, ...]) -> list[str]:
    return [n for n in preferred if n in names] + sorted(names - set(preferred))


# -- classification --------------------------------------------------------------------------------

CLASSIFY_METRICS = (
    "accuracy",
    "f1_macro",
    "f1_weighted",
    "precision_macro",
    "recall_macro",
    "auc_ovr_macro",  # single-label
    "auc_macro",  # multi-label
    "auc_micro",
)


def classify_tables(found: Found, slug: dict[Path, str]) -> list[Table]:
    """One summary row per (result, protocol), and one per-class table per result."""
    results = found.by_task("classify", "self_validate")
    if not results:
        return []
    present = {key.split(".", 1)[1] for r in results for key in r.metrics if "." in key} & set(
        CLASSIFY_METRICS
    )
    metrics = [m for m in CLASSIFY_METRICS if m in present]
    summary = Table(
        "classification",
        "Classification",
        "Classification on the evaluation split (test unless stated); mean ± std over seeds "
        "(sample std). Seeds, backbone, label fraction and split sizes per row.",
        [
            Column("run", "run"),
            Column("protocol", "protocol"),
            Column("backbone", "backbone"),
            Column("seeds", "seeds"),
            Column("label_fraction", "labels", 2),
            Column("synthetic", "synthetic"),
            Column("splits", "split sizes"),
            *[Column(m, m.replace("_", " ")) for m in metrics],
        ],
    )
    tables = [summary]
    for r in results:
        ctx = r.context
        protocols = list(dict.fromkeys(key.split(".", 1)[0] for key in r.metrics if "." in key))
        synthetic = ctx.get("synthetic")
        for protocol in protocols:
            row: dict[str, Cell] = {
                "run": found.name(r.folder),
                "protocol": protocol,
                "backbone": backbone_text(ctx.get("backbone"))
                if r.task == "classify"
                else f"classifier {Path(str(ctx.get('classifier', ''))).name}",
                "seeds": seeds_text(ctx),
                "label_fraction": ctx.get("label_fraction"),
                "synthetic": synthetic.get("mode") if isinstance(synthetic, dict) else "none",
                "splits": splits_text(ctx.get("split_sizes"))
                or (f"fake {ctx['images']}" if "images" in ctx else ""),
            }
            for m in metrics:
                row[m] = _ms(r.metrics.get(f"{protocol}.{m}"))
            summary.rows.append(row)
        per_class = _classify_per_class(r, found, slug[r.folder])
        if per_class is not None:
            tables.append(per_class)
    return tables


def _classify_per_class(r: EvalResult, found: Found, slug: str) -> Table | None:
    rows: list[dict[str, Cell]] = []
    for protocol, classes in r.per_class.items():
        if not isinstance(classes, dict):
            continue
        for cls, m in classes.items():
            if isinstance(m, dict):
                rows.append(
                    {"protocol": protocol, "class": cls}
                    | {k: _ms(m.get(k)) for k in ("precision", "recall", "f1", "auc")}
                    | {"support": _support(m.get("support"))}
                )
    if not rows:
        return None
    ctx = r.context
    return Table(
        f"classification_per_class_{slug}",
        f"Per class: {found.name(r.folder)}",
        f"Per-class scores of {found.name(r.folder)}; mean ± std over seeds "
        f"{seeds_text(ctx) or '(one run)'}; backbone {backbone_text(ctx.get('backbone')) or '--'}; "
        f"splits {splits_text(ctx.get('split_sizes')) or '--'}.",
        [
            Column("protocol", "protocol"),
            Column("class", "class"),
            Column("precision", "precision"),
            Column("recall", "recall"),
            Column("f1", "F1"),
            Column("auc", "AUC"),
            Column("support", "support", 0),
        ],
        rows,
    )


def _support(value: Any) -> Cell:
    mean = value.get("mean") if isinstance(value, dict) else value
    return int(mean) if _finite(mean) and float(mean).is_integer() else mean


# -- self-validation over checkpoints --------------------------------------------------------------

SWEEP_METRICS = (
    "precision_macro",
    "recall_macro",
    "f1_macro",
    "precision_micro",
    "recall_micro",
    "f1_micro",
    "accuracy",
)


def _one(metric: Any) -> float | None:
    """The value of a one-run metric (a sweep step is one sampled set: no spread to show)."""
    ms = _ms(metric)
    return ms.mean if ms is not None else None


def sweep_steps(r: EvalResult) -> list[int]:
    """The steps of a ``self_validate_sweep`` result, in order."""
    steps = r.context.get("steps")
    return [s for s in steps if isinstance(s, int)] if isinstance(steps, list) else []


def sweep_tables(r: EvalResult, found: Found, slug: str) -> list[Table]:
    """Per step: the macro and micro scores; and seed 003's table (per-class precision, recall,
    F1 and support, then the macro and micro rows) for every step."""
    ctx, name = r.context, found.name(r.folder)
    about = (
        f"{ctx.get('images_per_step', '?')} images per step ({ctx.get('sampler') or '?'}, "
        f"{ctx.get('sampling_steps') or '?'} sampling steps) from the checkpoints of "
        f"{Path(str(ctx.get('run', '?'))).name}, classified by "
        f"{Path(str(ctx.get('classifier', '?'))).name}"
    )
    summary = Table(
        f"self_validation_sweep_{slug}",
        f"Self-validation against step: {name}",
        f"Self-validation of each saved checkpoint (EMA weights): {about}. Macro = mean over "
        "classes; micro = pooled (with one label per image micro P = R = F1 = accuracy).",
        [Column("step", "step", 0), Column("images", "images", 0),
         *[Column(m, m.replace("_", " ")) for m in SWEEP_METRICS]],
    )  # fmt: skip
    per_class = Table(
        f"self_validation_sweep_per_class_{slug}",
        f"Self-validation per class and step: {name}",
        f"Per-class precision, recall and F1 of each saved checkpoint, then the macro and micro "
        f"averages: {about}.",
        [Column("step", "step", 0), Column("class", "class"), Column("precision", "precision"),
         Column("recall", "recall"), Column("f1", "F1"), Column("support", "support", 0)],
    )  # fmt: skip
    for step in sweep_steps(r):
        key = step_key(step)
        classes = r.per_class.get(key)
        classes = classes if isinstance(classes, dict) else {}
        support = sum(
            v for m in classes.values() if isinstance(m, dict)
            for v in [_support(m.get("support"))] if isinstance(v, int)
        )  # fmt: skip
        summary.rows.append(
            {"step": step, "images": support or None}
            | {m: _one(r.metrics.get(f"{key}.{m}")) for m in SWEEP_METRICS}
        )
        for cls, m in classes.items():
            if isinstance(m, dict):
                per_class.rows.append(
                    {"step": step, "class": cls}
                    | {k: _one(m.get(k)) for k in ("precision", "recall", "f1")}
                    | {"support": _support(m.get("support"))}
                )
        for average in ("macro", "micro"):
            per_class.rows.append(
                {"step": step, "class": f"{average} avg", "support": support or None}
                | {k: _one(r.metrics.get(f"{key}.{k}_{average}"))
                   for k in ("precision", "recall", "f1")}
            )  # fmt: skip
    return [summary, per_class] if summary.rows else []


# -- segmentation ----------------------------------------------------------------------------------

SEGMENT_METRICS = ("dice", "iou", "precision", "recall", "hd95")


def segment_tables(found: Found, slug: dict[Path, str]) -> list[Table]:
    results = found.by_task("segment")
    if not results:
        return []
    present = {m for r in results for m in r.metrics}
    metrics = _ordered(present, SEGMENT_METRICS)
    context = [
        Column("run", "run"),
        Column("encoder", "encoder"),
        Column("training_data", "training data"),
        Column("seeds", "seeds"),
        Column("splits", "split sizes"),
        Column("report_split", "scored on"),
    ]
    summary = Table(
        "segmentation",
        "Segmentation",
        "Segmentation: mean over cases of the mean over foreground classes; mean ± std over "
        "seeds; HD95 in pixels. Model selection on val; scored on the split named per row.",
        [*context, *[Column(m, m.upper() if m == "hd95" else m, 2 if m == "hd95" else 3)
                     for m in metrics]],
    )  # fmt: skip
    per_class = Table(
        "segmentation_per_class",
        "Segmentation per class",
        "Segmentation per foreground class; mean ± std over seeds; HD95 in pixels.",
        [Column("run", "run"), Column("class", "class"), Column("seeds", "seeds"),
         *[Column(m, m.upper() if m == "hd95" else m, 2 if m == "hd95" else 3) for m in metrics]],
    )  # fmt: skip
    for r in results:
        ctx = r.context
        training = ctx.get("training_data")
        base: dict[str, Cell] = {
            "run": found.name(r.folder),
            "encoder": encoder_text(ctx.get("encoder")),
            "training_data": training.get("kind") if isinstance(training, dict) else training,
            "seeds": seeds_text(ctx),
            "splits": splits_text(ctx.get("split_sizes")),
            "report_split": ctx.get("report_split"),
        }
        summary.rows.append(base | {m: _ms(r.metrics.get(m)) for m in metrics})
        for cls, m in r.per_class.items():
            if isinstance(m, dict):
                per_class.rows.append(
                    {"run": base["run"], "class": cls, "seeds": base["seeds"]}
                    | {k: _ms(m.get(k)) for k in metrics}
                )
    return [summary] + ([per_class] if per_class.rows else [])


# -- generator -------------------------------------------------------------------------------------

GENERATOR_METRICS = ("fid", "precision", "recall", "density", "coverage")


def generator_tables(found: Found, slug: dict[Path, str]) -> list[Table]:
    results = found.by_task("generator")
    if not results:
        return []
    names = {m for r in results for m in r.metrics}
    fds = sorted(m for m in names if m.startswith("fd_"))
    distances = [m for m in ("fid", "fid_768", *fds) if m in names]
    quality = [m for m in GENERATOR_METRICS[1:] if m in names]
    kid = "kid_mean" in names
    context = [
        Column("run", "run"),
        Column("fake", "synthetic set"),
        Column("reference", "reference (split)"),
        Column("n_real", "n real", 0),
        Column("n_fake", "n fake", 0),
        Column("sampler", "sampler"),
        Column("steps", "steps", 0),
        Column("encoders", "encoders"),
        Column("seed", "seed", 0),
    ]
    summary = Table(
        "generator",
        "Generator quality",
        "Generator quality against the reference set: FID (Inception-v3 pool3; FID-768 on its "
        "Mixed_6e features) and FD on other encoders (lower is better); KID mean ± std over subsets; precision, recall, density and "
        "coverage on the first encoder. Seed: the subsampling seed.",
        [
            *context,
            *[Column(m, _distance_label(m), 2) for m in distances],
            *([Column("kid", "KID", 4)] if kid else []),
            *[Column(m, m) for m in quality],
        ],
    )
    per_class = Table(
        "generator_per_class",
        "Generator quality per class",
        "Per-class Fréchet distances (classes matched by name); empty where a class has fewer "
        "than two images on either side.",
        [Column("run", "run"), Column("class", "class"), Column("n_real", "n real", 0),
         Column("n_fake", "n fake", 0), *[Column(m, _distance_label(m), 2)
                                          for m in distances]],
    )  # fmt: skip
    for r in results:
        ctx = r.context
        sampler, steps = generator_sampling(r, found)
        options = r.settings  # the evaluator's options (seed, encoders)
        encoders = ctx.get("encoders") or []
        row: dict[str, Cell] = {
            "run": found.name(r.folder),
            "fake": Path(str(ctx["fake"])).name if ctx.get("fake") else None,
            "reference": (
                f"{Path(str(ctx['real'])).name} ({ctx.get('split') or 'all'})"
                if ctx.get("real")
                else None
            ),
            "n_real": ctx.get("n_real"),
            "n_fake": ctx.get("n_fake"),
            "sampler": sampler,
            "steps": steps,
            "encoders": ",".join(
                str(e.get("spec", e)) if isinstance(e, dict) else str(e) for e in encoders
            ),
            "seed": options.get("seed"),
        }
        row |= {m: r.metrics.get(m) for m in distances + quality}
        if kid:
            row["kid"] = MeanStd(
                _num_or_none(r.metrics.get("kid_mean")), _num_or_none(r.metrics.get("kid_std"))
            )
        summary.rows.append(row)
        for cls, entry in r.per_class.items():
            if isinstance(entry, dict):
                per_class.rows.append(
                    {"run": row["run"], "class": cls, "n_real": entry.get("n_real"),
                     "n_fake": entry.get("n_fake")} | {m: entry.get(m) for m in distances}
                )  # fmt: skip
    return [summary] + ([per_class] if per_class.rows else [])


def _distance_label(metric: str) -> str:
    return {"fid": "FID", "fid_768": "FID-768"}.get(metric, metric)


# -- training, sampling, clusters ------------------------------------------------------------------


def training_table(found: Found) -> list[Table]:
    if not found.trainings:
        return []
    table = Table(
        "training",
        "Training runs",
        "Training runs (generator and self-supervised pretraining): final logged loss, last kNN "
        "monitor accuracy where recorded, and the share of the run's time spent waiting on data "
        "(the loader's first batch of each epoch included).",
        [
            Column("run", "run"),
            Column("kind", "kind"),
            Column("what", "model / method"),
            Column("seed", "seed", 0),
            Column("steps", "steps", 0),
            Column("epochs", "epochs", 1),
            Column("world_size", "processes", 0),
            Column("global_batch", "batch", 0),
            Column("final_loss", "final loss", 4),
            Column("knn_accuracy", "kNN acc.", 3),
            Column("seconds", "seconds", 0),
            Column("data_wait_fraction", "data wait", 3),
        ],
    )
    for run in found.trainings:
        s = run.summary
        knn = [r["knn_accuracy"] for r in run.records if _finite(r.get("knn_accuracy"))]
        losses = [r["loss"] for r in run.records if _finite(r.get("loss"))]
        what = s.get("model") or " ".join(str(s[k]) for k in ("method", "arch") if s.get(k))
        if isinstance(s.get("mix"), dict):
            what += " on " + ",".join(f"{k}:{v:g}" for k, v in s["mix"].items() if _finite(v))
        table.rows.append(
            {
                "run": found.name(run.folder),
                "kind": run.kind,
                "what": what,
                "seed": run.seed,
                "steps": s.get("steps"),
                "epochs": s.get("epochs"),
                "world_size": s.get("world_size"),
                "global_batch": s.get("global_batch"),
                "final_loss": s.get("final_loss", losses[-1] if losses else None),
                "knn_accuracy": knn[-1] if knn else s.get("knn_accuracy"),
                "seconds": s.get("seconds"),
                "data_wait_fraction": s.get("data_wait_fraction"),
            }
        )
    return [table]


def sampling_table(found: Found) -> list[Table]:
    if not found.samplings:
        return []
    table = Table(
        "sampling",
        "Sampling",
        "Sampling jobs: images drawn from a trained generator (EMA weights), sampler and steps.",
        [
            Column("run", "run"),
            Column("images", "images", 0),
            Column("sampler", "sampler"),
            Column("steps", "steps", 0),
            Column("guidance", "guidance", 2),
            Column("seed", "seed", 0),
            Column("workers", "workers", 0),
            Column("rate", "images/s", 2),
            Column("checkpoint", "checkpoint"),
        ],
    )
    for run in found.samplings:
        s = run.summary
        table.rows.append(
            {
                "run": found.name(run.folder),
                "images": s.get("images"),
                "sampler": s.get("sampler"),
                "steps": s.get("sampling_steps", s.get("steps")),
                "guidance": s.get("guidance_scale"),
                "seed": s.get("seed"),
                "workers": s.get("workers"),
                "rate": s.get("steady_images_per_s") or s.get("images_per_s"),
                "checkpoint": _checkpoint_text(s),
            }
        )
    return [table]


def cluster_table(found: Found) -> list[Table]:
    if not found.clusters:
        return []
    table = Table(
        "clusters",
        "Clusters",
        "k-means on L2-normalised features (cosine geometry): encoder, k and cluster sizes.",
        [
            Column("run", "run"),
            Column("shards", "shard set"),
            Column("encoder", "encoder"),
            Column("images", "images", 0),
            Column("k", "k", 0),
            Column("seed", "seed", 0),
            Column("sizes", "cluster sizes"),
        ],
    )
    for run in found.clusters:
        s = run.summary
        encoder = s.get("encoder")
        sizes = s.get("cluster_sizes")
        table.rows.append(
            {
                "run": found.name(run.folder),
                "shards": Path(str(s["shards"])).name if s.get("shards") else None,
                "encoder": encoder.get("spec") if isinstance(encoder, dict) else encoder,
                "images": s.get("images"),
                "k": s.get("k"),
                "seed": s.get("seed"),
                "sizes": " ".join(str(n) for n in sizes) if isinstance(sizes, list) else None,
            }
        )
    return [table]


def _checkpoint_text(summary: dict[str, Any]) -> str | None:
    """The sampled generator: its folder's name, and the checkpoint step when not the export."""
    if not summary.get("checkpoint"):
        return None
    name = Path(str(summary["checkpoint"])).name
    step = summary.get("checkpoint_step")
    return f"{name} step {step}" if isinstance(step, int) else name
