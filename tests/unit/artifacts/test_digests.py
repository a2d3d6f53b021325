"""The one sha256 helper: each function against hashlib, and the tensor digest's contract."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from suite.artifacts.digests import (
    sha256_bytes,
    sha256_file,
    sha256_json,
    sha256_tensors,
    sha256_text,
)


def test_file_bytes_and_text_are_plain_sha256(tmp_path: Path) -> None:
    data = bytes(range(256)) * 1000
    (tmp_path / "f").write_bytes(data)
    expected = hashlib.sha256(data).hexdigest()
    assert sha256_file(tmp_path / "f") == expected
    assert sha256_file(str(tmp_path / "f"), chunk=7) == expected  # chunking changes nothing
    assert sha256_bytes(data) == expected
    assert sha256_text("é:1") == hashlib.sha256("é:1".encode()).hexdigest()


def test_json_digest_ignores_key_order() -> None:
    a = {"b": [1, 2], "a": {"y": 1, "x": 2}}
    b = {"a": {"x": 2, "y": 1}, "b": [1, 2]}
    assert sha256_json(a) == sha256_json(b) == sha256_text(json.dumps(a, sort_keys=True))
    assert sha256_json({"a": 1}) != sha256_json({"a": 2})


def test_tensor_digest_is_names_then_bytes_in_name_order() -> None:
    state = {"w": torch.arange(6.0).reshape(2, 3).t(), "b": torch.ones(2, dtype=torch.int64)}
    expected = hashlib.sha256()
    for name in ("b", "w"):  # sorted names; a transposed view hashes its values, not its storage
        expected.update(name.encode())
        expected.update(state[name].contiguous().numpy().tobytes())
    assert sha256_tensors(state) == expected.hexdigest()
    assert sha256_tensors(dict(reversed(list(state.items())))) == expected.hexdigest()
    changed = {**state, "b": torch.tensor([1, 2])}
    assert sha256_tensors(changed) != expected.hexdigest()


def test_tensor_digest_of_a_module_and_of_bfloat16() -> None:
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    assert sha256_tensors(net.state_dict()) == sha256_tensors(
        {k: v.clone() for k, v in net.state_dict().items()}
    )
    half = {"w": torch.randn(4).to(torch.bfloat16)}  # numpy has no bfloat16: its bits are hashed
    assert sha256_tensors(half) == sha256_tensors({"w": half["w"].clone()})
    assert sha256_tensors(half) != sha256_tensors({"w": half["w"] * 2})
