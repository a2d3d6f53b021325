"""`synmed report RUN_DIR [--out DIR]`: report.md, CSV and LaTeX tables, PNG figures.

suite/cli.py adds the command with ``add_parser(groups)``; the pipeline's report stage calls
:func:`write_report`. Output goes through a staging folder, so a failed report leaves no partial
files behind and an earlier report stays as it was.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from suite.errors import DataError, ShardError

REPORT_DIR = "report"
REPORT_MD = "report.md"


def write_report(run_dir: Path, out: Path | None = None, *, overwrite: bool = False) -> Path:
    """Report everything found below ``run_dir`` into ``out`` (default ``run_dir/report``).

    An ``out`` that holds an earlier report is replaced (a report is derived output); another
    synmed output is replaced only with ``overwrite``, and neither a folder synmed did not write nor
    one of the stage outputs reported ever is. Returns the path of ``report.md``.
    """
    from suite.data.writer import staged_output
    from suite.report.discover import discover, is_empty
    from suite.report.markdown import compose

    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / REPORT_DIR
    found = discover(run_dir, exclude=(out,))
    if is_empty(found):
        raise DataError(
            f"{run_dir} holds no stage outputs to report (no result.json with a task, no training "
            "run, sampling or cluster output, no real and synthetic shard sets)",
            "pass a synmed run folder or a folder holding evaluation, training or sampling outputs",
        )
    replace = overwrite or (out / REPORT_MD).is_file()
    if out.is_dir() and not is_empty(discover(out)):
        raise ShardError(
            f"--out {out} holds stage outputs: a report never replaces what it could report",
            "pass a new --out (the default is RUN_DIR/report)",
        )
    with staged_output(out, overwrite=replace) as stage:
        (stage / REPORT_MD).write_text(compose(found, stage, out))
    return out / REPORT_MD


def add_parser(groups: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``report`` to the top-level ``synmed`` subparsers."""
    p = groups.add_parser(
        "report",
        help="report.md with CSV/LaTeX tables and PNG figures from a run folder's outputs",
        description=(
            "Find every stage output below RUN_DIR (evaluation result.json files, training runs, "
            "sampling and cluster outputs, shard sets) and write DIR/report.md, DIR/tables/ (CSV "
            "and booktabs LaTeX) and DIR/figures/ (loss curves, confusion matrices, per-class F1, "
            "FID against sampling steps, cluster maps, real vs synthetic samples)."
        ),
    )
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a folder holding stage outputs")
    p.add_argument("--out", type=Path, help="the report folder (default: RUN_DIR/report)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a --out that holds another synmed output (never a stage output it reports)",
    )
    p.set_defaults(func=report_command)
    return p


def report_command(args: argparse.Namespace) -> int:
    path = write_report(args.run_dir, args.out, overwrite=args.overwrite)
    print(f"wrote {path}")
    return 0
