"""report.md: every section present, every relative link resolves from the report folder."""

from __future__ import annotations

import re
from pathlib import Path

from suite.report.discover import discover
from suite.report.markdown import compose, slugs


def test_every_link_resolves_and_every_kind_has_its_section(run_dir: Path, tmp_path: Path) -> None:
    out = run_dir / "report"
    out.mkdir()
    text = compose(discover(run_dir), out, out)
    links = re.findall(r"\]\(([^)]+)\)", text)
    assert links and all(not Path(link).is_absolute() for link in links)
    for link in links:
        assert (out / link).is_file(), link
    headings = re.findall(r"^## (.+)$", text, flags=re.M)
    assert headings == ["Generator quality", "Classification", "Segmentation", "Training",
                        "Sampling", "Clusters", "Real and synthetic samples"]  # fmt: skip
    figures = {p.name for p in (out / "figures").iterdir()}
    assert {"generator_vs_steps.png", "loss_generator.png", "loss_pretrain.png",
            "knn_accuracy.png", "embedding_cluster.png", "real_vs_synthetic_0.png",
            "real_vs_synthetic_1.png", "f1_per_class_eval-classify-none.png",
            "confusion_eval-classify-none_knn.png", "cases_eval-segment-none.png"} <= figures  # fmt: skip
    assert all(f"figures/{name}" in text for name in figures)  # nothing drawn without a link
    assert "| eval_generator-50 | sample-50 | ingest (train) | 12 | 12 | ddim | 50 |" in text
    assert "- eval_generator-50: no 768-d FID (seed 001's): it was not asked for" in text


def test_slugs_are_unique_and_safe(run_dir: Path) -> None:
    found = discover(run_dir)
    names = list(slugs(found).values())
    assert len(names) == len(set(names))
    assert all(re.fullmatch(r"[a-z0-9-]+", n) for n in names)


def test_a_sweep_has_its_f1_against_step_figure_and_seed_003s_table(tmp_path: Path) -> None:
    from tests.unit.report.helpers import sweep_result

    result = sweep_result(tmp_path / "run" / "sweep")
    out = tmp_path / "report"
    out.mkdir()
    text = compose(discover(tmp_path / "run"), out, out)
    assert re.findall(r"^## (.+)$", text, flags=re.M) == ["Self-validation against training step"]
    figure = out / "figures" / "f1_against_step_sweep.png"
    assert (
        figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        and "figures/f1_against_step_sweep.png" in text
    )
    metrics = result["metrics"]
    for step in (100, 200, 300):
        macro, micro = (metrics[f"step_{step}.f1_{a}"]["mean"] for a in ("macro", "micro"))
        precision = metrics[f"step_{step}.precision_macro"]["mean"]
        assert f"| {step} | 30 | {precision:.3f} |" in text  # the per-step row
        b = result["per_class"][f"step_{step}"]["b"]
        cells = [f"{b[m]['mean']:.3f}" for m in ("precision", "recall", "f1")]
        assert f"| {step} | b | {' | '.join(cells)} | 10 |" in text  # seed 003's per-class row
        assert f"| {step} | macro avg |" in text and f"{macro:.3f}" in text
        assert f"| {step} | micro avg |" in text and f"{micro:.3f}" in text
    rows = (out / "tables" / "self_validation_sweep_sweep.csv").read_text().splitlines()
    assert len(rows) == 4 and rows[0].startswith(
        "step,images,precision_macro,recall_macro,f1_macro"
    )
