"""Tables: numbers round-trip through CSV, LaTeX is well-formed booktabs, context is stated."""

from __future__ import annotations

import csv
import re
from pathlib import Path

from suite.report.discover import discover
from suite.report.markdown import slugs
from suite.report.tables import (
    Column,
    MeanStd,
    Table,
    classify_tables,
    generator_tables,
    segment_tables,
    to_latex,
    to_markdown,
    write_table,
)
from tests.unit.data.helpers import make_shard_set
from tests.unit.report import helpers as h


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _check_latex(tex: str, columns: int) -> None:
    body = tex[tex.index("\\toprule") : tex.index("\\bottomrule")]
    assert tex.count("\\begin{tabular}") == tex.count("\\end{tabular}") == 1
    assert "\\midrule" in body and "\\begin{table}" in tex and "\\end{table}" in tex
    spec = re.search(r"\\begin\{tabular\}\{([lr]+)\}", tex)
    assert spec and len(spec.group(1)) == columns
    for line in body.splitlines()[1:]:
        if line.startswith("\\"):
            continue
        assert line.endswith("\\\\")
        assert len(re.findall(r"(?<!\\)&", line)) == columns - 1, line  # escaped & are text
        assert line.count("$") % 2 == 0
        assert not re.search(r"(?<!\\)_", line.replace("$", "")), line  # underscores escaped


def test_classification_numbers_round_trip_and_context_is_stated(tmp_path: Path) -> None:
    result = h.classify_result(tmp_path / "run" / "eval_classify" / "none", seeds=(0, 1, 2))
    found = discover(tmp_path / "run")
    summary, per_class = classify_tables(found, slugs(found))
    paths = write_table(summary, tmp_path)
    rows = _rows(paths["csv"])
    assert [r["protocol"] for r in rows] == ["linear_probe", "knn"]
    for row in rows:
        m = result["metrics"][f"{row['protocol']}.accuracy"]
        assert float(row["accuracy_mean"]) == m["mean"] and float(row["accuracy_std"]) == m["std"]
        assert float(row["auc_ovr_macro_mean"]) == result["metrics"][
            f"{row['protocol']}.auc_ovr_macro"]["mean"]  # fmt: skip
        assert row["seeds"] == "0,1,2" and row["backbone"] == "export resnet18 (real)"
        assert row["splits"] == "train 24, train_synthetic 0, val 6, test 30"
    assert result["metrics"]["knn.accuracy"]["std"] > 0  # the fixture is not degenerate
    tex = paths["tex"].read_text()
    _check_latex(tex, len(summary.columns))
    knn = result["metrics"]["knn.f1_macro"]
    assert f"${knn['mean']:.3f} \\pm {knn['std']:.3f}$" in tex
    f1 = result["per_class"]["knn"]["b"]["f1"]
    per_rows = _rows(write_table(per_class, tmp_path)["csv"])
    b = next(r for r in per_rows if r["protocol"] == "knn" and r["class"] == "b")
    assert float(b["f1_mean"]) == f1["mean"] and b["support"] == "10"
    _check_latex((tmp_path / f"{per_class.name}.tex").read_text(), len(per_class.columns))


def test_segmentation_and_generator_tables(tmp_path: Path) -> None:
    run = tmp_path / "run"
    seg = h.segment_result(run / "eval_segment" / "none")
    make_shard_set(run / "ingest", n=12)
    h.sampled_set(run / "sample", steps=25)
    gen = h.generator_result(run / "eval_generator", run / "ingest", run / "sample", 40.25)
    found = discover(run)
    out = tmp_path / "t"
    out.mkdir()
    seg_summary, seg_classes = segment_tables(found, slugs(found))
    row = _rows(write_table(seg_summary, out)["csv"])[0]
    assert float(row["dice_mean"]) == seg["metrics"]["dice"]["mean"]
    assert float(row["hd95_std"]) == seg["metrics"]["hd95"]["std"]
    assert (row["encoder"], row["seeds"], row["report_split"]) == ("conv random", "0,1", "test")
    assert row["splits"] == "train 106, val 13, test 14"
    wm = _rows(write_table(seg_classes, out)["csv"])[1]
    assert wm["class"] == "wm" and float(wm["dice_mean"]) == seg["per_class"]["wm"]["dice"]["mean"]
    gen_summary, gen_classes = generator_tables(found, slugs(found))
    paths = write_table(gen_summary, out)
    row = _rows(paths["csv"])[0]
    assert (
        float(row["fid"]) == 40.25 and float(row["fd_random_32"]) == gen["metrics"]["fd_random_32"]
    )
    assert (float(row["kid_mean"]), float(row["kid_std"])) == (0.0123, 0.0021)
    assert (row["sampler"], row["steps"], row["reference"]) == ("ddim", "25", "ingest (train)")
    assert row["encoders"] == "inception,random:32" and row["seed"] == "0"
    _check_latex(paths["tex"].read_text(), len(gen_summary.columns))
    per_rows = _rows(write_table(gen_classes, out)["csv"])
    assert [r["fid"] for r in per_rows] == ["40.25", "41.25", ""]  # a class too small: empty


def test_the_768_d_fid_has_its_own_column_overall_and_per_class(tmp_path: Path) -> None:
    run = tmp_path / "run"
    make_shard_set(run / "ingest", n=12)
    h.sampled_set(run / "sample", steps=25)
    h.generator_result(run / "eval_generator", run / "ingest", run / "sample", 350.0, fid_768=True)
    found = discover(run)
    summary, classes = generator_tables(found, slugs(found))
    assert [c.label for c in summary.columns if c.key.startswith("fid")] == ["FID", "FID-768"]
    assert summary.rows[0]["fid_768"] == 3.5
    assert [r["fid_768"] for r in classes.rows] == [0.5, 1.5, 2.5]


def test_rendering_of_missing_values_and_special_characters() -> None:
    table = Table("t", "T", "50% of a_b & c", [Column("name", "name"), Column("v", "value", 2)])
    table.rows += [{"name": "x_1 & #2", "v": MeanStd(0.5, 0.25)}, {"name": "y|z", "v": None}]
    tex = to_latex(table)
    assert r"\caption{50\% of a\_b \& c}" in tex
    assert r"x\_1 \& \#2 & $0.50 \pm 0.25$ \\" in tex and r"y|z & -- \\" in tex
    md = to_markdown(table).splitlines()
    assert md[1] == "|---|---:|" and md[2] == "| x_1 & #2 | 0.50 ± 0.25 |"
    assert md[3] == "| y\\|z | — |"
