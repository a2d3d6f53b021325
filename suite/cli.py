"""The `synmed` command (also `python -m suite`): the top-level parser and the dispatch only.

Each package owns its commands in its own ``cli.py`` (``add_parser(groups)`` adds them, with their
``func``); this module wires them in, in the order ``synmed --help`` lists them, and runs the chosen
one. Parsing only: every command calls into the library, imported when the command runs.

Errors caused by input (a :class:`~suite.errors.SynmedError`) print as one message with its fix and
exit with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import signal
import sys

from suite.errors import SynmedError

EXIT_INPUT_ERROR = 2


# -- helpers shared by the packages' cli.py --------------------------------------------------------


def add_config_args(p: argparse.ArgumentParser) -> None:
    """``CONFIG [KEY=VALUE ...]``: a YAML config and dotted overrides."""
    p.add_argument("config", help="a YAML config under configs/")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. data.image_size=128")


# -- config: the root schema's own command -------------------------------------------------------


def cmd_config_show(args: argparse.Namespace) -> int:
    from suite.config import config_digest, dump_yaml
    from suite.schema import load_config

    cfg = load_config(args.config, args.overrides)
    print(
        f"# resolved from {args.config}"
        + (f" with {' '.join(args.overrides)}" if args.overrides else "")
    )
    print(f"# digest {config_digest(cfg)}")
    print(dump_yaml(cfg), end="")
    return 0


def _add_config_parser(groups: argparse._SubParsersAction) -> None:
    config = groups.add_parser("config", help="show and check configs").add_subparsers(
        dest="cmd", required=True
    )
    show = config.add_parser(
        "show", help="print the resolved config (after overrides) and its digest"
    )
    add_config_args(show)
    show.set_defaults(func=cmd_config_show)


# -- parser ----------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from suite import __version__
    from suite.data import cli as data_cli
    from suite.evaluation import cli as evaluation_cli
    from suite.features import cli as features_cli
    from suite.generative import cli as generative_cli
    from suite.launch import cli as launch_cli
    from suite.models import cli as models_cli
    from suite.pipeline import cli as pipeline_cli
    from suite.report import cli as report_cli
    from suite.sampling import cli as sampling_cli
    from suite.ssl import cli as ssl_cli

    parser = argparse.ArgumentParser(
        prog="synmed",
        description="Synthetic medical images -> self-supervised pretraining -> evaluation, on SLURM and Ray.",
    )
    parser.add_argument("--version", action="version", version=f"synmed-suite {__version__}")
    groups = parser.add_subparsers(dest="group", required=True, metavar="COMMAND")

    _add_config_parser(groups)
    # `train` is a group so that other model kinds can add `train KIND` beside the generator
    train = groups.add_parser("train", help="train a model (generator)").add_subparsers(
        dest="cmd", required=True
    )
    generative_cli.add_parser(train)
    generative_cli.add_group_parser(groups)  # generator merge-classes
    ssl_cli.add_parser(groups)
    sampling_cli.add_parser(groups)
    features_cli.add_cluster_parser(groups)
    evaluation_cli.add_evaluate_parser(groups)
    pipeline_cli.add_parser(groups)
    report_cli.add_parser(groups)
    launch_cli.add_parser(groups)  # submit, launch, jobs
    data_cli.add_parser(groups)
    models_cli.add_parser(groups)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse, letting dotted overrides (KEY=VALUE) stand anywhere, also after options."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    stray = [e for e in extra if "=" not in e or e.startswith("-")]
    if stray or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(stray or extra)}")
    if extra:
        args.overrides = list(args.overrides or []) + extra
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # under a file-size limit (ulimit -f) the kernel would kill the process mid-write; ignored,
    # write() fails with EFBIG and the writer reports the file and the fix
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        return int(args.func(args) or 0)
    except SynmedError as err:
        _close_progress_bars()
        print(f"error: {err.what}", file=sys.stderr)
        if err.fix:
            print(f"  fix: {err.fix}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except KeyboardInterrupt:
        return 130


def _close_progress_bars() -> None:
    """End the progress bars an error interrupted, so the message starts on a line of its own
    (tqdm leaves the cursor after the bar); tqdm is not imported here if no command used it."""
    tqdm = sys.modules.get("tqdm")
    for bar in list(getattr(getattr(tqdm, "tqdm", None), "_instances", ())):
        bar.close()


if __name__ == "__main__":
    sys.exit(main())
