"""sha256 of files, bytes, text, JSON-able values and tensors: the one digest helper of the suite."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def sha256_file(path: Path | str, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file's bytes, read in chunks (shards and weights can be GBs)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_text(text: str) -> str:
    """Hex sha256 of ``text`` encoded as UTF-8."""
    return hashlib.sha256(text.encode()).hexdigest()


def sha256_json(value: Any) -> str:
    """Digest of a JSON-able value, independent of dict key order."""
    return sha256_text(json.dumps(value, sort_keys=True))


def sha256_tensors(state: Mapping[str, Any]) -> str:
    """Digest of a ``state_dict``: each name then its tensor's bytes, in name order.

    Equal for equal weights wherever they live (the tensors are copied to CPU, contiguous), so
    ranks can compare their copies of a model without gathering them. bfloat16 has no numpy
    dtype: its bits are hashed as int16 (every other dtype hashes its numpy bytes as before).
    """
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(state.items()):
        data = tensor.detach().cpu().contiguous()
        if data.dtype == torch.bfloat16:
            data = data.view(torch.int16)
        digest.update(name.encode())
        digest.update(data.numpy().tobytes())
    return digest.hexdigest()


def first_mismatch(folder: Path | str, files: Mapping[str, str]) -> Path | None:
    """The first of ``files`` (relative path -> sha256) that is missing below ``folder`` or
    differs from its digest; None when all match."""
    for name, digest in files.items():
        path = Path(folder) / name
        if not path.is_file() or sha256_file(path) != digest:
            return path
    return None
