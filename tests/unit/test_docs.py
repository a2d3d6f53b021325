"""The docs cite only files a clone has: every relative path in README.md, docs/*.md, the comments
of configs/**/*.yaml and the comments and strings of suite/**/*.py that starts with one of the
repository's top folders (``configs/``, ``docs/``, ``suite/``, ``scripts/``, ``slurm/``,
``benchmarks/``, ``tests/``) must exist (a glob must match something), and nothing may point at
``../shared`` (the research notes beside a development checkout, absent from a user's clone), nor
name an all-caps note (``SEEDS.md``) the clone does not hold.

A path inside another project (a seed's ``configs/contrastive/dino.yaml``) is written with its
repository in front, ``owner/name:path`` or ``owner/name/path``, which is not a reference here.
"""

from __future__ import annotations

import io
import re
import tokenize
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOP = ("configs", "docs", "suite", "scripts", "slurm", "benchmarks", "tests")
# Not preceded by a path or word character, ':' or '/', so `owner/name:configs/x` and
# `runs/x/configs` are not references into this repository; `../shared/...` always is.
REFERENCE = re.compile(
    r"(?<![\w./:~-])(?:\.\./shared/[\w./*-]*|(?:" + "|".join(TOP) + r")/[\w./*-]*)"
    r"|(?<![\w./:~-])\b[A-Z][A-Z_]+\.md\b"
)


def references(text: str) -> list[str]:
    return [m.group(0).rstrip(".,:;") for m in REFERENCE.finditer(text)]


def exists(ref: str) -> bool:
    if ref.startswith("../"):
        return False  # outside the repository: a user's clone does not have it
    if "/" not in ref:  # an all-caps note: at the top or in docs/
        return (REPO / ref).is_file() or (REPO / "docs" / ref).is_file()
    if any(c in ref for c in "*?["):
        return any(REPO.glob(ref))
    return (REPO / ref).exists()


def yaml_comments(text: str) -> str:
    # a '#' starts a comment at the line start or after whitespace (YAML's rule); values are
    # run settings (output folders), not citations
    return "\n".join(m.group(1) for m in re.finditer(r"(?:^|\s)#(.*)$", text, re.M))


def python_text(text: str) -> str:
    """Comments and string literals (docstrings, help texts, error messages) of a module."""
    kinds = {tokenize.COMMENT, tokenize.STRING}
    kinds |= {getattr(tokenize, "FSTRING_MIDDLE", tokenize.STRING)}
    return "\n".join(
        tok.string
        for tok in tokenize.generate_tokens(io.StringIO(text).readline)
        if tok.type in kinds
    )


def missing_in(paths: list[Path], extract: Callable[[str], str]) -> list[str]:
    """``FILE: REFERENCE  (the line)`` for every reference that names nothing in the repo."""
    problems = []
    for path in paths:
        for line in extract(path.read_text()).splitlines():
            for ref in references(line):
                if not exists(ref):
                    where = f"{path.relative_to(REPO)}: {ref}"
                    problems.append(f"{where}  ({line.strip()[:80]})")
    return problems


DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
CONFIGS = sorted((REPO / "configs").rglob("*.yaml"))
SOURCES = sorted((REPO / "suite").rglob("*.py"))


def test_readme_and_docs_cite_only_files_in_the_repo() -> None:
    problems = missing_in(DOCS, lambda text: text)
    assert not problems, "missing:\n" + "\n".join(problems)


def test_config_comments_cite_only_files_in_the_repo() -> None:
    problems = missing_in(CONFIGS, yaml_comments)
    assert not problems, "missing:\n" + "\n".join(problems)


def test_suite_comments_and_strings_cite_only_files_in_the_repo() -> None:
    problems = missing_in(SOURCES, python_text)
    assert not problems, "missing:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("see docs/pipeline.md.", ["docs/pipeline.md"]),
        ("(`configs/papers/medcls/`)", ["configs/papers/medcls/"]),
        ("the notes in ../shared/research/SEEDS.md", ["../shared/research/SEEDS.md"]),
        ("as SEEDS.md says", ["SEEDS.md"]),
        ("dvtiendat/contrastive-synthesis-medcls:configs/contrastive/dino.yaml", []),
        ("runs/medcls/configs and shards/x", []),
        ("configs/evaluate/classify_*.yaml", ["configs/evaluate/classify_*.yaml"]),
    ],
)
def test_what_counts_as_a_reference(text: str, expected: list[str]) -> None:
    assert references(text) == expected


def test_missing_files_are_found() -> None:
    assert not exists("docs/no-such-page.md")
    assert not exists("../shared/research/SEEDS.md")
    assert not exists("SEEDS.md")
    assert not exists("configs/papers/*/no_such_*.yaml")
    assert exists("README.md") and exists("configs/papers/*/run_*.yaml") and exists("suite/")


def paper_names() -> dict[str, str]:
    """Seed number -> short name, from docs/papers.md's table (the one numbering)."""
    rows = re.findall(
        r"^\| (\d{3}) \| ([^|]+?) \|", (REPO / "docs" / "papers.md").read_text(), re.M
    )
    return dict(rows)


def test_papers_are_numbered_one_way_everywhere() -> None:
    """``seed NNN`` names one of docs/papers.md's papers, and a name beside it is that paper's."""
    names = paper_names()
    assert sorted(names) == ["000", "001", "002", "003", "004"]
    known = {name.lower(): number for number, name in names.items()}
    problems = []
    texts = [(p, p.read_text()) for p in DOCS] + [
        (p, yaml_comments(p.read_text())) for p in CONFIGS
    ]
    for path, text in texts:
        where = path.relative_to(REPO)
        for number in re.findall(r"(?i)\bseeds? (\d{3})\b", text):
            if number not in names:
                problems.append(f"{where}: seed {number} is not in docs/papers.md")
        # "seed 001 (medcls)", "Seed 000's (I-SynMed" and "DiffBoost's (seed 002)"
        pairs = re.findall(r"(?i)\bseed (\d{3})(?:'s)? \(([\w-]+(?: [\w-]+)?)", text)
        pairs += [(n, w) for w, n in re.findall(r"([\w-]+)(?:'s)? \(seed (\d{3})\b", text)]
        for number, word in pairs:
            if word.lower() in known and known[word.lower()] != number:
                problems.append(f"{where}: {word} is seed {known[word.lower()]}, not {number}")
    assert not problems, "\n".join(problems)
