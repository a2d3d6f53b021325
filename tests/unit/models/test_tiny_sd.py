"""`synmed models tiny-sd`: an SD 1.5-layout folder diffusers loads and samples from on the CPU."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest
import torch

from suite.cli import main
from suite.data.shards import MARKER
from suite.models.tiny_sd import SUBFOLDERS, write_tiny_sd
from tests.unit.models.test_clip_bpe import need_bpe_file

PROMPT = "a photo of a cat"


def _digests(folder: Path) -> dict[str, str]:
    # the marker records when it was written; everything else must be the same bytes
    return {
        str(f.relative_to(folder)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(folder.rglob("*"))
        if f.is_file() and f.name != MARKER
    }


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need_bpe_file()
    return write_tiny_sd(tmp_path_factory.mktemp("tiny") / "sd", seed=0)


def test_folder_loads_and_generates_on_cpu(tiny: Path) -> None:
    from diffusers import PNDMScheduler, StableDiffusionPipeline

    index = json.loads((tiny / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert index["safety_checker"] == [None, None]
    for sub in SUBFOLDERS:
        assert (tiny / sub).is_dir(), sub
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json"):
        assert (tiny / "tokenizer" / name).is_file(), name
    pipe = StableDiffusionPipeline.from_pretrained(tiny, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.safety_checker is None and isinstance(pipe.scheduler, PNDMScheduler)
    assert pipe.tokenizer(PROMPT).input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert pipe.text_encoder.config.vocab_size == 49408
    images = pipe(
        PROMPT, num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="np"
    ).images
    assert images.shape == (1, 32, 32, 3)
    assert ((images >= 0) & (images <= 1)).all() and images.std() > 0


def test_same_seed_same_bytes_other_seed_and_size(tiny: Path, tmp_path: Path) -> None:
    from diffusers import StableDiffusionPipeline

    again = write_tiny_sd(tmp_path / "again", seed=0)
    assert _digests(again) == _digests(tiny)
    other = write_tiny_sd(tmp_path / "other", seed=1, image_size=16)
    unet = "unet/diffusion_pytorch_model.safetensors"
    assert _digests(other)[unet] != _digests(tiny)[unet]
    pipe = StableDiffusionPipeline.from_pretrained(other, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    images = pipe(PROMPT, num_inference_steps=2, output_type="np").images
    assert images.shape == (1, 16, 16, 3)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["models", "tiny-sd", *argv])
    return code, capsys.readouterr().err


def test_cli_existing_folder_needs_overwrite(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    code, err = _run(capsys, "--out", str(foreign))
    assert code == 2 and f"output folder {foreign} is not empty" in err and "--overwrite" in err
    code, err = _run(capsys, "--out", str(foreign), "--overwrite")
    assert code == 2 and "was not written by synmed" in err
    assert [p.name for p in foreign.iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["foreign"]  # no staging folder
    # a folder this command wrote is replaced with --overwrite
    before = _digests(tiny)
    code, _ = _run(capsys, "--out", str(tiny), "--overwrite", "--seed", "0")
    assert code == 0 and _digests(tiny) == before


def test_cli_input_errors_leave_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "sd"
    code, err = _run(capsys, "--out", str(out), "--image-size", "30")
    assert code == 2 and "--image-size 30" in err and "--image-size 32" in err
    monkeypatch.setitem(sys.modules, "open_clip", None)  # as if open-clip-torch were not installed
    code, err = _run(capsys, "--out", str(out))
    assert code == 2 and "open-clip-torch" in err and "pip install --no-deps open-clip-torch" in err
    assert list(tmp_path.iterdir()) == []
