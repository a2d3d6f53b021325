"""`synmed evaluate TASK`: the evaluation command group.

suite/cli.py adds it with ``add_evaluate_parser(groups)``; each task (segment, classify, generator)
adds its own subcommand with its module's ``add_parser(subparsers)``, one line each below.
"""

from __future__ import annotations

import argparse


def add_evaluate_parser(groups: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``evaluate`` group and its task subcommands to the top-level subparsers."""
    p = groups.add_parser("evaluate", help="evaluate generators and encoders on downstream tasks")
    tasks = p.add_subparsers(dest="cmd", required=True, metavar="TASK")
    from suite.evaluation.segment.cli import add_parser as add_segment

    add_segment(tasks)
    from suite.evaluation.generator.cli import add_parser as add_generator

    add_generator(tasks)
    from suite.evaluation.classify.cli import add_parser as add_classify

    add_classify(tasks)
    return p
