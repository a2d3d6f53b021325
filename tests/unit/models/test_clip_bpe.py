"""The CLIP tokenizer built offline from open-clip-torch's BPE file is SD 1.5's."""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import pytest

from suite.errors import DataError
from suite.models import clip_bpe
from tests.conftest import need


def need_bpe_file() -> None:
    try:
        clip_bpe.bpe_vocab_path()
    except DataError as err:
        need(f"{err.what} ({err.fix})")


def test_tokenizer_gives_sd15_ids(tmp_path: Path) -> None:
    need_bpe_file()
    folder = clip_bpe.write_tokenizer_files(tmp_path / "tok")
    tokenizer = clip_bpe.load_clip_tokenizer(folder)
    assert len(tokenizer) == clip_bpe.VOCAB_SIZE == 49408
    assert tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (
        49406,
        49407,
        49407,
    )
    assert tokenizer.model_max_length == 77
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    assert (vocab["!"], vocab["a</w>"], vocab["<|endoftext|>"]) == (0, 320, 49407)
    merges = (folder / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert merges[0] == "#version: 0.2" and len(merges) == 1 + clip_bpe.NUM_MERGES


def test_missing_open_clip_is_one_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules is how Python marks a module as not importable
    monkeypatch.setitem(sys.modules, "open_clip", None)
    with pytest.raises(DataError, match="open-clip-torch, which is not installed") as err:
        clip_bpe.bpe_vocab_path()
    assert err.value.fix and "pip install --no-deps open-clip-torch" in err.value.fix


def test_a_truncated_bpe_file_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bpe.txt.gz"
    bad.write_bytes(gzip.compress(b"#version\nh e\nt h\n"))
    with pytest.raises(DataError, match=f"{bad} holds 2 merges"):
        clip_bpe.read_merges(bad)
    bad.write_bytes(b"not gzip")
    with pytest.raises(DataError, match=f"{bad} is not a readable gzip"):
        clip_bpe.read_merges(bad)
