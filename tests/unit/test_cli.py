"""The `synmed` command: every subcommand keeps its options, and each package registers its own."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from suite.cli import build_parser

# Every command's options and positionals, in order, as they were before the commands moved into
# the packages' cli.py (the whole --help text of every command was compared then, byte for byte).
OPTIONS: dict[str, str] = {
    "config show": "-h/--help config overrides",
    "config": "-h/--help {show}",
    "train generator": (
        "-h/--help config overrides --resume --auto-resume --allow-config-change --restart "
        "--each-class"
    ),
    "train": "-h/--help {generator}",
    "generator merge-classes": "-h/--help run parts",
    "generator init": "-h/--help config overrides --out --overwrite",
    "generator": "-h/--help {merge-classes,init}",
    "pretrain": (
        "-h/--help config overrides --resume --auto-resume --allow-config-change --restart"
    ),
    "sample": (
        "-h/--help --checkpoint --checkpoint-step --num-images --per-class --class-weights --shard-size "
        "--batch-size --sampler --sampling-steps --guidance-scale --prompt --negative-prompt --seed "
        "--workers --ray-address "
        "--conditions --conditions-split --per-condition --accept --min-confidence --max-attempts "
        "--out"
    ),
    "cluster": (
        "-h/--help --shards --encoder --k --representatives --classes --split --keep-min-mean "
        "--keep-max-std --keep-top --workers --ray-address --batch-size "
        "--seed --embedding --memory-budget-gb --out --overwrite"
    ),
    "evaluate segment": "-h/--help config overrides --out --overwrite",
    "evaluate generator": (
        "-h/--help --real --fake --encoder --real-split --workers --ray-address --batch-size "
        "--cache-dir --no-cache --max-samples --kid-subsets --kid-subset-size --seed --out "
        "--overwrite"
    ),
    "evaluate classify": "-h/--help config overrides --out --overwrite",
    "evaluate self-validate": "-h/--help --classifier --fake --out --batch-size --overwrite",
    "evaluate self-validate-sweep": (
        "-h/--help --run --classifier --per-class --out --steps --sampler --sampling-steps --seed "
        "--sample-batch-size --batch-size --workers --ray-address"
    ),
    "evaluate": "-h/--help {segment,generator,classify,self-validate,self-validate-sweep}",
    "run": "-h/--help config overrides --until --only --force --fold --on --dry-run",
    "report": "-h/--help run_dir --out --overwrite",
    "submit": (
        "-h/--help stage config overrides --nodes --gpus-per-node --tasks-per-node "
        "--cpus-per-task --mem-gb --partition --time --signal-delay --array --each-class --after --wait"
    ),
    "launch": "-h/--help --procs-per-node command",
    "jobs": "-h/--help --runs",
    "data ingest": (
        "-h/--help source --out --config --overwrite --quiet --format --image-size --aspect "
        "--channels --clip-percentiles --hu-floor --class-names --split-fractions --seed --shard-size "
        "--compression --limit --dicom-window --window-center --window-width --mask --mask-names "
        "--mask-threshold --missing-masks --nifti-volume --axis --plane-labels --min-foreground --min-mask-pixels "
        "--images-dir overrides"
    ),
    "data verify": "-h/--help dirs --no-digests",
    "data info": "-h/--help dir --json",
    "data export": "-h/--help dir --to --split --limit --overwrite",
    "data merge": "-h/--help inputs --out --shard-size --overwrite",
    "data edges": (
        "-h/--help dir --out --canny-sigma --canny-low --canny-high --hed --shard-size --overwrite "
        "--quiet"
    ),
    "data augment": (
        "-h/--help dir --out --classes --split --copies --seed --no-hflip --degrees --translate "
        "--scale --brightness --contrast --shard-size --overwrite"
    ),
    "data folds": "-h/--help dir --folds --out --val-fraction --shuffle-seed --overwrite",
    "data demo": "-h/--help",
    "data": "-h/--help {ingest,verify,info,export,merge,edges,augment,folds,demo}",
    "models tiny-sd": "-h/--help --out --seed --image-size --overwrite",
    "models": "-h/--help {tiny-sd}",
    "": (
        "-h/--help --version "
        "{config,train,generator,pretrain,sample,cluster,evaluate,run,report,submit,launch,jobs,data,models}"
    ),
}

# Which module registers each command (its `func`).
OWNERS = {
    "config show": "suite.cli",
    "train generator": "suite.generative.cli",
    "generator merge-classes": "suite.generative.cli",
    "generator init": "suite.generative.cli",
    "pretrain": "suite.ssl.cli",
    "sample": "suite.sampling.cli",
    "cluster": "suite.features.cli",
    "evaluate segment": "suite.evaluation.segment.cli",
    "evaluate generator": "suite.evaluation.generator.cli",
    "evaluate classify": "suite.evaluation.classify.cli",
    "evaluate self-validate": "suite.evaluation.classify.cli",
    "evaluate self-validate-sweep": "suite.evaluation.classify.cli",
    "run": "suite.pipeline.cli",
    "report": "suite.report.cli",
    "submit": "suite.launch.cli",
    "launch": "suite.launch.cli",
    "jobs": "suite.launch.cli",
    "data ingest": "suite.data.cli",
    "data verify": "suite.data.cli",
    "data info": "suite.data.cli",
    "data export": "suite.data.cli",
    "data merge": "suite.data.cli",
    "data edges": "suite.data.cli",
    "data augment": "suite.data.cli",
    "data folds": "suite.data.cli",
    "data demo": "suite.data.cli",
    "models tiny-sd": "suite.models.cli",
}


def _commands() -> dict[str, argparse.ArgumentParser]:
    found: dict[str, argparse.ArgumentParser] = {}

    def walk(parser: argparse.ArgumentParser, name: str) -> None:
        found[name] = parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub, child in action.choices.items():
                    walk(child, f"{name} {sub}".strip())

    walk(build_parser(), "")
    return found


def _options(parser: argparse.ArgumentParser) -> str:
    rows = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            rows.append("{" + ",".join(action.choices) + "}")
        else:
            rows.append("/".join(action.option_strings) or action.dest)
    return " ".join(rows)


def test_every_command_keeps_its_options() -> None:
    commands = _commands()
    assert set(commands) == set(OPTIONS)
    for name, parser in commands.items():
        assert _options(parser) == OPTIONS[name], name


@pytest.mark.parametrize("name", list(OWNERS))
def test_each_package_registers_its_commands(name: str) -> None:
    func = _commands()[name].get_default("func")
    assert func is not None and func.__module__ == OWNERS[name]


def test_every_leaf_command_has_an_owner() -> None:
    leaves = {n for n, p in _commands().items() if p.get_default("func") is not None}
    assert leaves == set(OWNERS)


def test_an_input_error_is_one_message_and_exit_2(tmp_path) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("data:\n  image_sise: 64\n")
    proc = subprocess.run(
        [sys.executable, "-m", "suite", "config", "show", str(cfg)], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "error: " in proc.stderr and "did you mean 'image_size'" in proc.stderr
