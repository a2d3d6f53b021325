"""`synmed train generator` on bad input: one error naming the thing, exit 2, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from suite.cli import main

REPO = Path(__file__).resolve().parents[3]
DIFF = str(REPO / "configs/generator/tiny_diffusers.yaml")


def test_shards_without_manifest_is_one_shard_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"")
    out = tmp_path / "runs"
    assert main(["train", "generator", DIFF, f"data.shards={folder}", f"run.out_dir={out}"]) == 2
    err = capsys.readouterr().err
    assert f"{folder} is not a shard set (no manifest.json" in err
    assert "synmed data ingest" in err and "Traceback" not in err
    assert not out.exists() and [p.name for p in folder.iterdir()] == ["a.png"]
