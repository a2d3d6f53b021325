"""A generator from any saved checkpoint of its run, not only the final export.

The run's saved config rebuilds the family (:func:`~suite.generative.families.build_generator`,
so a frozen base is read from where the config names it, never from the checkpoint), the
checkpoint's trainable state goes in, and the EMA's copies of the EMA'd modules go over it: the
weights an export at that step would hold (exports use the EMA weights). The checkpoint's files
are checked against its digests first. Its identity for sampling is the sha256 of its
``meta.json``, which names every file by digest, as an export's is the sha256 of its metadata
file.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch

from suite.artifacts.digests import sha256_file
from suite.data.shards import MANIFEST, read_manifest
from suite.errors import ConfigError, DataError, SynmedError
from suite.generative.base import Generator
from suite.train import run_state
from suite.train.loop import CONFIG_FILE, EXPORT_DIR
from suite.train.run_state import CHECKPOINTS, META, CheckpointError

EMA_PREFIX = "ema_model."  # ema-pytorch's EMA keeps its copy of the modules under this name


def run_folder(path: Path) -> Path:
    """The run folder of ``path`` (a run folder, or its export/ folder)."""
    path = Path(path)
    if path.name == EXPORT_DIR and not (path / CHECKPOINTS).is_dir():
        return path.parent
    return path


def saved_steps(run_dir: Path) -> list[int]:
    """The steps of the run's complete checkpoints, oldest first."""
    return [int(p.name.split("-", 1)[1]) for p in run_state.list_checkpoints(run_folder(run_dir))]


def checkpoint_folder(run_dir: Path, step: int) -> Path:
    """The folder of step ``step``'s checkpoint; one error listing the saved steps otherwise."""
    run_dir = run_folder(run_dir)
    steps = saved_steps(run_dir)
    if not steps:
        raise CheckpointError(
            f"{run_dir} holds no saved checkpoints (no complete {CHECKPOINTS}/step-*/ folder)",
            "pass the folder of a `synmed train generator` run (run.out_dir/run.name), or drop "
            "--checkpoint-step to sample its export",
        )
    if step not in steps:
        raise CheckpointError(
            f"{run_dir} has no checkpoint of step {step}; saved steps: "
            + ", ".join(str(s) for s in steps),
            f"pass --checkpoint-step with one of them (e.g. --checkpoint-step {steps[-1]})",
        )
    return run_dir / CHECKPOINTS / run_state.step_dir_name(step)


def checkpoint_digest(run_dir: Path, step: int) -> str:
    """The identity of step ``step``'s checkpoint: the sha256 of its ``meta.json``."""
    return sha256_file(checkpoint_folder(run_dir, step) / META)


def load_checkpoint_generator(run_dir: Path, step: int) -> tuple[Generator, str]:
    """The generator of run ``run_dir`` at saved step ``step``, with the EMA weights (what an
    export at that step holds), in eval mode, and the checkpoint's digest."""
    from suite.generative.families import build_generator
    from suite.schema import SuiteConfig, load_config

    run_dir = run_folder(run_dir)
    checkpoint = checkpoint_folder(run_dir, step)
    try:
        meta = run_state.verify_checkpoint(checkpoint)
    except CheckpointError as err:
        raise CheckpointError(
            err.what,
            f"sample another saved step ({', '.join(str(s) for s in saved_steps(run_dir))}); "
            "this one was changed after it was written",
        ) from None
    config_path = run_dir / CONFIG_FILE
    if not config_path.is_file():
        raise ConfigError(
            f"{run_dir} has checkpoints but no {CONFIG_FILE}, which rebuilds the model",
            f"put the run's {CONFIG_FILE} back in {run_dir}",
        )
    absolute = run_dir.resolve()
    raw = _raw_config(config_path)
    # the config's relative paths (data.shards, a base model folder) are the training
    # process's: read them from its working directory, wherever this process runs
    with contextlib.chdir(_training_cwd(absolute, raw) or Path.cwd()):
        shards = (raw.get("data") or {}).get("shards")
        # a shard set moved away since training: the class names then come from the export
        gone = ["data.shards=null"] if shards and not Path(shards).exists() else []
        cfg = load_config(absolute / CONFIG_FILE, gone, schema=SuiteConfig)
        if cfg.model is None:
            raise ConfigError(
                f"{config_path} has no model: section: {run_dir} is not a generator run",
                "pass the folder of a `synmed train generator` run",
            )
        model = build_generator(cfg.model)
        class_names = _class_names(absolute, cfg, meta.data_digest, shards)
    state = torch.load(checkpoint / run_state.STATE, map_location="cpu", weights_only=True)
    ema = state.get("ema")
    if not isinstance(ema, dict) or "model" not in state:
        raise CheckpointError(
            f"{checkpoint} holds no generator weights with an EMA (not a generator run's "
            "checkpoint)",
            "pass the folder of a `synmed train generator` run",
        )
    fix = f"sample the run with the config it was trained with ({config_path} was changed)"
    try:
        model.load_trainable_state(state["model"])
        with torch.no_grad():
            for name, module in model.ema_modules().items():
                module.load_state_dict(_prefixed(ema, f"{EMA_PREFIX}{name}."))
    except RuntimeError as err:
        raise CheckpointError(
            f"{checkpoint} does not fit the model {config_path} describes: "
            f"{str(err).splitlines()[0]}",
            fix,
        ) from None
    model._class_names = class_names
    model._export_folder = str(checkpoint)  # what made it, for the model's messages
    return model.eval(), sha256_file(checkpoint / META)


def load_sampling_generator(path: Path, step: int | None) -> tuple[Generator, str]:
    """The export of ``path`` (``step`` None) or its run's checkpoint of ``step``."""
    if step is None:
        from suite.generative.export import load_generator

        return load_generator(path)
    return load_checkpoint_generator(path, step)


def _raw_config(path: Path) -> dict[str, Any]:
    """The saved config as YAML, before its paths are checked (they may be relative)."""
    import yaml

    try:
        body = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ConfigError(f"{path} cannot be read ({err})", "put the run's config back") from None
    if not isinstance(body, dict):
        raise ConfigError(f"{path} is not a config mapping", "put the run's config back")
    return body


def _training_cwd(run_dir: Path, raw: dict[str, Any]) -> Path | None:
    """The working directory the run (an absolute folder) was trained from, when it is the relative
    ``run.out_dir/run.name`` of its config (else None: its relative paths are taken as they are)."""
    run = raw.get("run") or {}
    if not isinstance(run.get("out_dir"), str) or not isinstance(run.get("name"), str):
        return None
    relative = Path(run["out_dir"]) / run["name"]
    if relative.is_absolute() or ".." in relative.parts:
        return None
    if run_dir.parts[-len(relative.parts) :] != relative.parts:
        return None
    return run_dir.parents[len(relative.parts) - 1]


def _prefixed(state: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def _class_names(run_dir: Path, cfg: Any, data_digest: str, named: str | None) -> list[str]:
    """The class names the run trained on, from its shard set's manifest (what the trainer read),
    else from its export made on the same data. ``named``: data.shards as the config says it."""
    shards = Path(cfg.data.shards) if cfg.data.shards else None
    manifest = shards / MANIFEST if shards is not None else None
    if manifest is not None and manifest.is_file() and sha256_file(manifest) == data_digest:
        return list(read_manifest(manifest.parent).class_names)
    try:
        from suite.artifacts.exports import read_export

        _, export, _ = read_export(run_dir / EXPORT_DIR, "generator", verify=False)
    except SynmedError:
        export = None
    if export is not None and export.provenance.get("data_digest") == data_digest:
        return list(export.body.get("class_names", []))
    if not getattr(cfg.model, "num_classes", 0):
        return []  # an unconditional model names no classes
    raise DataError(
        f"the class names of {run_dir} are unknown: its shard set {named} is gone or changed "
        "since training, and the run has no export of the same data",
        f"put the shard set back at {named} (data.shards of {run_dir / CONFIG_FILE}, relative "
        f"to {Path.cwd()})",
    )
