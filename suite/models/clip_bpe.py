"""The CLIP tokenizer (as Stable Diffusion 1.x uses it), built offline from the BPE vocabulary
that the ``open-clip-torch`` wheel ships (``open_clip/bpe_simple_vocab_16e6.txt.gz``).

The file is OpenAI's CLIP BPE list: a header line, then merges. CLIP keeps the first
49,152 - 256 - 2 merges (open_clip's ``SimpleTokenizer`` takes ``merges[1:48895]``); its vocabulary
is the 256 byte characters, the same with ``</w>``, one token per merge and the two special tokens,
49,408 entries in the order SD 1.5's ``vocab.json`` has them ("a photo of a cat" ->
49406 320 1125 539 320 2368 49407). The package is found, never imported: its own dependencies
(timm, ftfy...) are not needed.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path
from typing import Any

from suite.errors import DataError

PACKAGE = "open_clip"
BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
INSTALL = "pip install --no-deps open-clip-torch"
NUM_MERGES = 49152 - 256 - 2
VOCAB_SIZE = 2 * 256 + NUM_MERGES + 2
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
MAX_LENGTH = 77
# SD 1.5's tokenizer/tokenizer_config.json: padding and unknown characters are end-of-text too
TOKENIZER_CONFIG: dict[str, Any] = {
    "tokenizer_class": "CLIPTokenizer",
    "model_max_length": MAX_LENGTH,
    "bos_token": BOS,
    "eos_token": EOS,
    "unk_token": EOS,
    "pad_token": EOS,
    "do_lower_case": True,
    "errors": "replace",
    "add_prefix_space": False,
}
TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json")


def bpe_vocab_path() -> Path:
    """``bpe_simple_vocab_16e6.txt.gz`` inside the installed open-clip-torch, found without importing it."""
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except ValueError:  # a module object without a spec stands in sys.modules
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "the CLIP tokenizer is built from the BPE vocabulary of open-clip-torch, which is not installed",
            f"{INSTALL} (--no-deps: only its vocabulary file is used)",
        )
    path = Path(list(spec.submodule_search_locations)[0]) / BPE_FILE
    if not path.is_file():
        raise DataError(
            f"{path} is missing: the open-clip-torch install holds no BPE vocabulary",
            "reinstall it: pip install --force-reinstall --no-deps open-clip-torch",
        )
    return path


def _byte_characters() -> list[str]:
    """GPT-2's byte -> printable character table (CLIP's too), in its order: printable Latin-1
    bytes map to themselves, the others to 256 + n, so BPE never sees whitespace or controls."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    codes = list(printable)
    extra = [b for b in range(256) if b not in printable]
    return [chr(c) for c in codes] + [chr(256 + n) for n in range(len(extra))]


def read_merges(path: Path | None = None) -> list[str]:
    """The merges CLIP uses, ``"a b"`` per entry."""
    path = path or bpe_vocab_path()
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            lines = f.read().split("\n")
    except (OSError, EOFError, UnicodeDecodeError) as err:
        raise DataError(
            f"{path} is not a readable gzip text file ({type(err).__name__}: {err})",
            "reinstall it: pip install --force-reinstall --no-deps open-clip-torch",
        ) from None
    merges = [m for m in lines[1 : NUM_MERGES + 1] if len(m.split()) == 2]
    if len(merges) != NUM_MERGES:
        raise DataError(
            f"{path} holds {len(merges)} merges (lines 'a b' after the header) where CLIP's "
            f"vocabulary needs the first {NUM_MERGES}",
            "reinstall it: pip install --force-reinstall --no-deps open-clip-torch",
        )
    return merges


def clip_vocab(merges: list[str]) -> list[str]:
    """Token strings in id order."""
    chars = _byte_characters()
    return [*chars, *(c + "</w>" for c in chars), *("".join(m.split()) for m in merges), BOS, EOS]


def write_tokenizer_files(folder: Path, bpe_path: Path | None = None) -> Path:
    """Write vocab.json, merges.txt, tokenizer_config.json and special_tokens_map.json into ``folder``."""
    merges = read_merges(bpe_path)
    vocab = clip_vocab(merges)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(
        json.dumps({tok: i for i, tok in enumerate(vocab)}, ensure_ascii=False), encoding="utf-8"
    )
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8"
    )
    (folder / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG, indent=2) + "\n")
    special = {k: TOKENIZER_CONFIG[k] for k in ("bos_token", "eos_token", "unk_token", "pad_token")}
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
    return folder


def load_clip_tokenizer(folder: Path) -> Any:
    """``CLIPTokenizer.from_pretrained`` on a folder :func:`write_tokenizer_files` wrote.

    Not ``CLIPTokenizer(vocab_file=...)``: in transformers 5 that constructor ignores the files
    and silently builds a 3-token vocabulary.
    """
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)
    if (
        len(tokenizer) != VOCAB_SIZE
    ):  # guards against a transformers that reads the files differently
        raise DataError(
            f"the CLIP tokenizer loaded from {folder} has {len(tokenizer)} tokens, not {VOCAB_SIZE}",
            "use transformers>=4.40,<6 (pyproject.toml's range)",
        )
    return tokenizer
