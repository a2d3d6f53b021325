"""Lay out ``report.md``: which tables and figures each section holds, in what order.

:func:`compose` writes the tables (``tables/``) and figures (``figures/``) into the folder it is
given and returns the Markdown text. Every link is relative to the report's final folder, so the
report keeps working when the run folder is moved or copied as a whole.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from suite.evaluation.classify.sweep import step_key
from suite.report import figures
from suite.report.discover import Found, generator_sampling, grid_pairs
from suite.report.tables import (
    Table,
    classify_tables,
    cluster_table,
    generator_tables,
    markdown_escape,
    sampling_table,
    segment_tables,
    sweep_steps,
    sweep_tables,
    to_markdown,
    training_table,
    write_table,
)

TABLES = "tables"
FIGURES = "figures"


def slugs(found: Found) -> dict[Path, str]:
    """A unique, file-name-safe stem for every folder the report names."""
    folders = [r.folder for r in found.results] + [t.folder for t in found.trainings]
    folders += [s.folder for s in found.samplings] + [c.folder for c in found.clusters]
    out: dict[Path, str] = {}
    used: set[str] = set()
    for folder in folders:
        if folder in out:
            continue
        base = re.sub(r"[^A-Za-z0-9]+", "-", found.name(folder)).strip("-").lower() or "run"
        name, n = base, 2
        while name in used:
            name, n = f"{base}-{n}", n + 1
        used.add(name)
        out[folder] = name
    return out


class _Doc:
    """The Markdown being written plus the folder its files go to."""

    def __init__(self, stage: Path, final: Path) -> None:
        self.stage, self.final = stage, final
        self.lines: list[str] = []
        (stage / TABLES).mkdir(parents=True, exist_ok=True)
        (stage / FIGURES).mkdir(parents=True, exist_ok=True)

    def add(self, *lines: str) -> None:
        self.lines += [*lines, ""]

    def link(self, path: Path) -> str:
        """``path`` (a source file) relative to the final report folder, POSIX-style."""
        return Path(os.path.relpath(path.resolve(), self.final.resolve())).as_posix()

    def table(self, table: Table) -> None:
        write_table(table, self.stage / TABLES)
        self.add(
            f"### {markdown_escape(table.title)}",
            f"*{markdown_escape(table.caption)}*",
        )
        self.add(to_markdown(table))
        self.add(
            f"[CSV]({TABLES}/{table.name}.csv) · [LaTeX]({TABLES}/{table.name}.tex)",
        )

    def figure(self, name: str, caption: str, draw: Callable[[Path], bool]) -> bool:
        path = self.stage / FIGURES / f"{name}.png"
        if not draw(path):
            path.unlink(missing_ok=True)
            return False
        self.add(f"![{markdown_escape(caption)}]({FIGURES}/{name}.png)", f"*{caption}*")
        return True

    def copy(self, source: Path, name: str, caption: str) -> None:
        shutil.copy2(source, self.stage / FIGURES / f"{name}.png")  # a copy survives moving
        self.add(
            f"![{markdown_escape(caption)}]({FIGURES}/{name}.png)",
            f"*{markdown_escape(caption)}* (from [{source.name}]({self.link(source)}))",
        )

    def sources(self, paths: list[Path]) -> None:
        self.add("Sources: " + ", ".join(f"[{self.link(p)}]({self.link(p)})" for p in paths))


def compose(found: Found, stage: Path, final: Path) -> str:
    """Write tables and figures into ``stage``; return report.md's text (links as from ``final``)."""
    doc = _Doc(stage, final)
    slug = slugs(found)
    doc.add(
        f"# synmed report: {markdown_escape(found.root.resolve().name)}",
        f"Run folder `{found.root.resolve()}`, reported {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}."
        f" Found {len(found.results)} evaluation result(s), {len(found.trainings)} training run(s), "
        f"{len(found.samplings)} sampling output(s), {len(found.clusters)} cluster output(s), "
        f"{len(found.shard_sets)} shard set(s). Tables are also in `{TABLES}/` as CSV (full "
        f"precision; mean and std in separate columns) and LaTeX (booktabs).",
    )
    _generator(doc, found, slug)
    _classification(doc, found, slug)
    _sweeps(doc, found, slug)
    _segmentation(doc, found, slug)
    _training(doc, found, slug)
    _sampling(doc, found, slug)
    _clusters(doc, found, slug)
    _grids(doc, found)
    if found.skipped:
        doc.add("## Not reported", *[f"- {markdown_escape(s)}" for s in found.skipped])
    return "\n".join(doc.lines).rstrip() + "\n"


def _generator(doc: _Doc, found: Found, slug: dict[Path, str]) -> None:
    results = found.by_task("generator")
    if not results:
        return
    doc.add("## Generator quality")
    for table in generator_tables(found, slug):
        doc.table(table)
    notes = [(r, r.context.get("fid_768_note")) for r in results]
    if any(note for _, note in notes):
        doc.add(*[f"- {markdown_escape(found.name(r.folder))}: {markdown_escape(str(note))}"
                  for r, note in notes if note])  # fmt: skip
    metric = "fid" if any("fid" in r.metrics for r in results) else None
    if metric is None:
        metric = next((m for r in results for m in sorted(r.metrics) if m.startswith("fd_")), None)
    points = []
    for r in results:
        sampler, steps = generator_sampling(r, found)
        value = r.metrics.get(metric) if metric else None
        if isinstance(steps, int) and isinstance(value, int | float):
            points.append((str(sampler or "unknown sampler"), steps, float(value)))
    if metric:
        doc.figure(
            "generator_vs_steps",
            f"{metric.upper() if metric == 'fid' else metric} against sampling steps "
            f"({len(points)} generator evaluations)",
            lambda p: figures.metric_vs_steps(points, metric, f"{metric} vs sampling steps", p),
        )
    doc.sources([r.folder / "result.json" for r in results])


def _classification(doc: _Doc, found: Found, slug: dict[Path, str]) -> None:
    results = found.by_task("classify", "self_validate")
    if not results:
        return
    doc.add("## Classification")
    tables = classify_tables(found, slug)
    doc.table(tables[0])
    per_class = {t.name: t for t in tables[1:]}
    for r in results:
        name, s = found.name(r.folder), slug[r.folder]
        table = per_class.get(f"classification_per_class_{s}")
        if table is not None:
            doc.table(table)
        doc.figure(
            f"f1_per_class_{s}",
            f"Per-class F1 of {name} (mean ± std over seeds)",
            lambda p, r=r, name=name: figures.per_class_bars(
                r.per_class, "f1", f"per-class F1: {name}", p
            ),
        )
        confusion = r.raw.get("confusion")
        for protocol, entry in confusion.items() if isinstance(confusion, dict) else []:
            if isinstance(entry, dict):
                doc.figure(
                    f"confusion_{s}_{protocol}",
                    f"Confusion matrix of {name}, {protocol} (counts summed over seeds)",
                    lambda p, e=entry, t=f"{name}: {protocol}": figures.confusion_matrix(e, t, p),
                )
        doc.sources([r.folder / "result.json"])


def _sweeps(doc: _Doc, found: Found, slug: dict[Path, str]) -> None:
    results = found.by_task("self_validate_sweep")
    if not results:
        return
    doc.add("## Self-validation against training step")
    for r in results:
        name, s = found.name(r.folder), slug[r.folder]
        for table in sweep_tables(r, found, s):
            doc.table(table)
        points = [
            (step, *(_mean(r.metrics.get(f"{step_key(step)}.f1_{a}")) for a in ("macro", "micro")))
            for step in sweep_steps(r)
        ]
        doc.figure(
            f"f1_against_step_{s}",
            f"F1 against step: self-validation of each saved checkpoint ({name})",
            lambda p, points=points, name=name: figures.f1_against_step(
                points, f"self-validation F1 against step: {name}", p
            ),
        )
        doc.sources([r.folder / "result.json"])


def _mean(metric: object) -> float | None:
    value = metric.get("mean") if isinstance(metric, dict) else metric
    return float(value) if isinstance(value, int | float) else None


def _segmentation(doc: _Doc, found: Found, slug: dict[Path, str]) -> None:
    results = found.by_task("segment")
    if not results:
        return
    doc.add("## Segmentation")
    for table in segment_tables(found, slug):
        doc.table(table)
    for r in results:
        figure = r.raw.get("figure")
        if isinstance(figure, str) and (r.folder / figure).is_file():
            doc.copy(
                r.folder / figure,
                f"cases_{slug[r.folder]}",
                f"Validation cases of {found.name(r.folder)} (image, truth, prediction; first seed)",
            )
    doc.sources([r.folder / "result.json" for r in results])


def _training(doc: _Doc, found: Found, slug: dict[Path, str]) -> None:
    if not found.trainings:
        return
    doc.add("## Training")
    for table in training_table(found):
        doc.table(table)
    for kind, title in (("generator", "Generator training"), ("pretrain", "SSL pretraining")):
        runs = [(found.name(t.folder), t) for t in found.trainings if t.kind == kind]
        if runs:
            doc.figure(
                f"loss_{kind}",
                f"{title}: loss against step",
                lambda p, runs=runs, title=title: figures.curves(
                    runs, "loss", "training loss", f"{title} loss", p
                ),
            )
    runs = [(found.name(t.folder), t) for t in found.trainings]
    doc.figure(
        "knn_accuracy",
        "kNN monitor accuracy against step (pretraining)",
        lambda p: figures.curves(runs, "knn_accuracy", "kNN accuracy", "kNN monitor", p),
    )
    pretrained = [t for t in found.trainings if t.kind == "pretrain"]
    doc.figure(
        "knn_by_source",
        "kNN monitor against pretraining epoch by source (mean ± std over seeds)",
        lambda p: figures.knn_by_source(pretrained, "kNN monitor by pretraining source", p),
    )
    doc.sources([t.folder / "summary.json" for t in found.trainings])


def _sampling(doc: _Doc, found: Found, slug: dict[Path, str]) -> None:
    if not found.samplings:
        return
    doc.add("## Sampling")
    for table in sampling_table(found):
        doc.table(table)
    for run in found.samplings:
        if run.grid is not None:
            doc.copy(
                run.grid, f"samples_{slug[run.folder]}", f"Samples of {found.name(run.folder)}"
            )


def _clusters(doc: _Doc, found: Found, slug: dict[Path, str]) -> None:
    if not found.clusters:
        return
    doc.add("## Clusters")
    for table in cluster_table(found):
        doc.table(table)
    for run in found.clusters:
        if run.embedding is not None:
            doc.copy(
                run.embedding,
                f"embedding_{slug[run.folder]}",
                f"2D map of the features of {found.name(run.folder)}, coloured by cluster",
            )


def _grids(doc: _Doc, found: Found) -> None:
    pairs = grid_pairs(found)
    if not pairs:
        return
    doc.add("## Real and synthetic samples")
    for n, (real, fake) in enumerate(pairs):
        doc.figure(
            f"real_vs_synthetic_{n}",
            f"Real ({real.name}, left) and synthetic ({fake.name}, right) images, "
            "one row per class when both sets are labelled",
            lambda p, real=real, fake=fake: figures.sample_grid(real, fake, p),
        )
