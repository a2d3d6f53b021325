"""`synmed report` on the output of a real `synmed evaluate segment` run (MNI152, 16 px)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from tests.integration.helpers import REPO, synmed


def test_report_of_a_real_segmentation_run(mni16: Path, tmp_path: Path) -> None:
    shards = mni16  # the session's (the tables do not depend on the image size)
    run = tmp_path / "run"
    proc = synmed("evaluate", "segment", str(REPO / "configs/evaluate/segment_mni152.yaml"),
                  f"data.shards={shards}", "train.epochs=1", "train.seeds=[0, 1]",
                  "train.threads=1", "model.channels=[8, 16]", "--out", str(run / "eval_segment"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    proc = synmed("report", str(run))
    assert proc.returncode == 0, proc.stderr
    report = run / "report"
    assert f"wrote {report / 'report.md'}" in proc.stdout
    result = json.loads((run / "eval_segment" / "result.json").read_text())
    with open(report / "tables" / "segmentation.csv", newline="") as f:
        row = next(csv.DictReader(f))
    for metric in ("dice", "iou", "hd95"):
        assert float(row[f"{metric}_mean"]) == result["metrics"][metric]["mean"]
        assert float(row[f"{metric}_std"]) == result["metrics"][metric]["std"]
    assert row["splits"] == "train 106, val 13, test 14" and row["seeds"] == "0,1"
    tex = (report / "tables" / "segmentation.tex").read_text()
    dice = result["metrics"]["dice"]
    assert f"${dice['mean']:.3f} \\pm {dice['std']:.3f}$" in tex and "\\bottomrule" in tex
    text = (report / "report.md").read_text()
    assert "## Segmentation" in text and "](../eval_segment/result.json)" in text
    assert (report / "figures" / "cases_eval-segment.png").read_bytes()[:4] == b"\x89PNG"
