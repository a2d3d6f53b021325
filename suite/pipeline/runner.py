"""Plan a run (which stages, which digests, which to skip) and run it here or on SLURM.

Each stage's digest covers its own settings, the run's seed and the digests of the stages it reads,
so a change anywhere reaches every stage downstream. A finished stage leaves
``<run>/stages/<stage>.json`` (digest, outputs, times). Running again skips a stage whose record has
the same digest; a stage whose config changed and whose outputs exist is refused unless ``--force``
(which replaces them).
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from suite.artifacts.digests import sha256_text
from suite.artifacts.files import atomic_write_text
from suite.config import dump_yaml, load_config
from suite.data.folds import fold_name
from suite.errors import ConfigError, SynmedError
from suite.pipeline.config import PipelineConfig, check_generator_input, stage_order
from suite.pipeline.folds import fold_run, folds_of, per_fold_stages
from suite.pipeline.stages import STAGES, Context, digest

RECORDS = "stages"


@dataclass(slots=True)
class Step:
    stage: str
    digest: str
    action: str  # "run" | "skip" (complete, same digest)
    reason: str
    fold: int | None = None  # a per-fold stage of a cross-validated run: its fold

    @property
    def label(self) -> str:
        return self.stage if self.fold is None else f"{fold_name(self.fold)}/{self.stage}"


def record_path(run_dir: Path, stage: str) -> Path:
    return run_dir / RECORDS / f"{stage}.json"


def read_record(run_dir: Path, stage: str) -> dict[str, Any] | None:
    path = record_path(run_dir, stage)
    return json.loads(path.read_text()) if path.is_file() else None


def plan(
    cfg: PipelineConfig,
    *,
    until: str | None = None,
    only: str | None = None,
    force: bool = False,
    fold: int | None = None,
) -> tuple[Path, list[Step]]:
    """The ordered steps of this invocation; every stage config is checked first. In a
    cross-validated run (a ``folds`` stage) the per-fold stages are steps of each fold's run;
    ``fold`` keeps only that fold's."""
    stages = stage_order(cfg)
    for name in (until, only):
        if name is not None and name not in stages:
            raise ConfigError(
                f"stage {name!r} is not in this run's stages", f"stages: {', '.join(stages)}"
            )
    folds = folds_of(cfg)
    if fold is not None and (folds is None or not 0 <= fold < folds.folds):
        raise ConfigError(
            f"--fold {fold}: the run has no such fold"
            + ("" if folds else " (it has no folds stage)"),
            f"pass --fold 0 to {folds.folds - 1}" if folds else "drop --fold",
        )
    if fold is None:
        selected = [only] if only else stages[: stages.index(until) + 1] if until else stages
        return _plan(cfg, selected, force=force)[:2]
    # one fold: --only and --until name stages of the fold's run (its ingest included)
    fold_stages = ["ingest", *per_fold_stages(cfg)]
    for name in (until, only):
        if name is not None and name not in fold_stages:
            raise ConfigError(
                f"stage {name!r} is not a stage of a fold's run",
                f"with --fold: {', '.join(fold_stages)}",
            )
    chosen = [only] if only else fold_stages[: fold_stages.index(until) + 1] if until else None
    run_dir, steps, _ = _plan(cfg, [], force=force, fold_selected=chosen or fold_stages)
    return run_dir, [s for s in steps if s.fold == fold]


def _plan(
    cfg: PipelineConfig,
    selected: list[str],
    *,
    force: bool,
    inherited: tuple[str, ...] = (),
    fold_selected: list[str] | None = None,
) -> tuple[Path, list[Step], dict[str, str]]:
    """Steps of the ``selected`` stages and the digest of every stage. ``inherited``: digests a
    fold run's first stage also covers (the folds stage that wrote its set). ``fold_selected``:
    the stages of each fold run to step (default: the selected per-fold stages, after the fold
    run's ingest)."""
    run_dir = Path(cfg.run.out_dir) / cfg.run.name
    ctx = Context(cfg, run_dir)
    stages = stage_order(cfg)
    check_generator_input(cfg)
    per_fold = per_fold_stages(cfg)
    digests: dict[str, str] = {}
    fold_steps: list[Step] = []
    for name in stages:
        if name in per_fold:
            continue  # from the fold runs, planned with the folds stage
        stage = STAGES[name]
        stage.check(ctx)
        upstream = [] if stage.needs(cfg) else list(inherited)
        for need in stage.needs(cfg):
            if need in digests:
                upstream.append(digests[need])
                continue
            record = read_record(run_dir, need)
            if record is None:
                raise ConfigError(
                    f"stage {name} reads the output of stage {need}, which is not in stages and "
                    f"has not run in {run_dir}",
                    f"add {need} to stages, or run it first",
                )
            upstream.append(record["digest"])
        digests[name] = digest(name, stage.settings(cfg), cfg.run.seed, upstream)
        if name == "folds" and per_fold:
            wanted = [s for s in selected if s in per_fold]
            in_fold = fold_selected if fold_selected is not None else (
                ["ingest", *wanted] if wanted else []
            )  # fmt: skip
            fold_digests: list[dict[str, str]] = []
            for k in range(folds_count(cfg)):
                _, steps_k, digests_k = _plan(
                    fold_run(cfg, run_dir, k), in_fold, force=force, inherited=(digests["folds"],)
                )
                fold_steps += [replace(step, fold=k) for step in steps_k]
                fold_digests.append(digests_k)
            for s in per_fold:
                digests[s] = sha256_text(repr([d[s] for d in fold_digests]))
    steps = []
    for name in (s for s in selected if s not in per_fold):
        record = read_record(run_dir, name)
        outputs = ctx.folder(name)
        if record is not None and record["digest"] == digests[name] and not force:
            steps.append(Step(name, digests[name], "skip", "complete, same config"))
        elif record is not None and record["digest"] != digests[name] and not force:
            raise ConfigError(
                f"stage {name} ran in {run_dir} with another config (or its inputs changed)",
                f"pass --force to replace {outputs}, or use another run.name",
            )
        else:
            reason = "forced" if force and record else "not run yet"
            steps.append(Step(name, digests[name], "run", reason))
        if name == "folds":
            steps += fold_steps
    if "folds" not in selected:  # --only / --until on per-fold stages alone
        steps = fold_steps + steps
    return run_dir, steps, digests


def folds_count(cfg: PipelineConfig) -> int:
    folds = folds_of(cfg)
    assert folds is not None, "a run with per-fold stages has a folds stage"
    return folds.folds


def step_run(cfg: PipelineConfig, step: Step, run_dir: Path) -> tuple[PipelineConfig, Path]:
    """The config and run folder a step runs in: the run's, or its fold run's."""
    if step.fold is None:
        return cfg, run_dir
    return fold_run(cfg, run_dir, step.fold), run_dir / fold_name(step.fold)


def remove_outputs(run_dir: Path, stage: str) -> None:
    """--force: a stage's old outputs and record go before it runs again."""
    record_path(run_dir, stage).unlink(missing_ok=True)
    if (run_dir / stage).exists():
        shutil.rmtree(run_dir / stage)


def run_stage(cfg: PipelineConfig, step: Step, run_dir: Path) -> dict[str, Any] | None:
    """Run one stage in this process and record it (rank 0 of a multi-process stage writes).
    Returns None when a training stage was stopped by a signal (not recorded: not complete)."""
    from suite.launch.env import detect

    stage = STAGES[step.stage]
    started = time.time()
    outputs = stage.run(Context(cfg, run_dir))
    if outputs is None:
        return None
    if detect().rank == 0:
        record = {
            "stage": step.stage,
            "digest": step.digest,
            "outputs": outputs,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "seconds": round(time.time() - started, 2),
        }
        record_path(run_dir, step.stage).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(record_path(run_dir, step.stage), json.dumps(record, indent=1) + "\n")
    return outputs


def run_local(cfg: PipelineConfig, steps: list[Step], run_dir: Path, *, force: bool) -> bool:
    """Run the steps in this process, in order; False if a training stage was stopped."""
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "run.yaml", dump_yaml(cfg))
    for step in steps:
        if step.action == "skip":
            print(f"synmed run: {step.label}: skipped ({step.reason})", flush=True)
            continue
        print(f"synmed run: {step.label}: running ({step.reason})", flush=True)
        step_cfg, step_dir = step_run(cfg, step, run_dir)
        if force:
            remove_outputs(step_dir, step.stage)
        t0 = time.time()
        outputs = run_stage(step_cfg, step, step_dir)
        if outputs is None:
            print(f"synmed run: {step.label}: stopped by a signal; run again to continue")
            return False
        print(f"synmed run: {step.label}: done in {time.time() - t0:.0f} s", flush=True)
    return True


# -- SLURM -------------------------------------------------------------------------------------------


class StageInJob:
    """What a Submitit job of `synmed run --on slurm` calls: one stage, from the config file."""

    def __call__(
        self,
        config: str | None,
        overrides: list[str],
        stage: str,
        force: bool,
        fold: int | None = None,
        part: int | None = None,
    ) -> str:
        cfg = load_config(config, overrides, schema=PipelineConfig)
        run_dir, steps = plan(cfg, only=stage, force=force, fold=fold)
        (step,) = [s for s in steps if s.stage == stage]  # a fold run plans its ingest too
        if step.action == "run":  # --force removed the old outputs at submission
            step_cfg, step_dir = step_run(cfg, step, run_dir)
            if part is None:
                run_stage(step_cfg, step, step_dir)
            else:  # an array task: one part, recorded by the job that joins them
                STAGES[stage].run_part(Context(step_cfg, step_dir), part)
        return stage


def submit_slurm(
    config: str | None,
    overrides: list[str],
    cfg: PipelineConfig,
    steps: list[Step],
    run_dir: Path,
    *,
    force: bool,
    venv: str | None = None,
) -> list[tuple[str, str]]:
    """Submit every stage to run as a job depending on the one before; returns (label, job id).

    Training stages run as Submitit jobs of ``slurm.nodes`` nodes (one task per GPU, or one per
    node without GPUs); Ray stages through slurm/sample_ray.sbatch (a Ray head plus workers);
    the rest as one-task Submitit jobs. In a cross-validated run each fold's chain starts after
    the folds stage, the folds run side by side, and the report waits for all of them.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "run.yaml", dump_yaml(cfg))
    folder = run_dir.resolve() / "submitit"
    jobs: list[tuple[str, str]] = []
    last: str | None = None  # the run's own chain
    fold_last: dict[int, str] = {}  # each fold's chain
    config_arg = str(Path(config).resolve()) if config else None
    # jobs start in other folders: pin the run folder to the one planned here
    overrides = [*overrides, f"run.out_dir={Path(cfg.run.out_dir).resolve()}"]
    for step in steps:
        if step.action == "skip":
            continue
        if step.fold is not None:
            after = fold_last.get(step.fold, last)
        else:  # after every fold's chain (the report), or after the run's last job
            after = ":".join(fold_last.values()) if fold_last else last
        if force:
            remove_outputs(step_run(cfg, step, run_dir)[1], step.stage)
        submitted = _submit_step(step, cfg, config_arg, overrides, folder, run_dir, after, venv)
        job_id, log, waits = submitted.job_id, submitted.log, submitted.waits
        print(f"synmed run: {step.label}: submitted as job {job_id}"
              + (f" (after {waits})" if waits else ""), flush=True)  # fmt: skip
        jobs.append((step.label, job_id))
        if step.fold is not None:
            fold_last[step.fold] = job_id
        else:
            last, fold_last = job_id, {}
        command = shlex.join(["synmed", "run", config_arg or "", *overrides])
        with open(run_dir / "jobs.jsonl", "a") as f:  # what `synmed jobs --runs` lists
            for label, task_id, task_log in [*submitted.parts, (step.label, job_id, log)]:
                f.write(json.dumps({"job_id": task_id, "stage": label, "run": str(run_dir.resolve()),
                                    "stderr": task_log, "command": command}) + "\n")  # fmt: skip
    return jobs


@dataclass(frozen=True, slots=True)
class Submitted:
    """A step's job, its log and what it waits on; a step made of parts also lists its array's
    tasks (label ``stage[part]``, job id, log) so that `synmed jobs --runs` shows each one."""

    job_id: str
    log: str
    waits: str | None
    parts: tuple[tuple[str, str, str], ...] = ()


def _submit_step(
    step: Step,
    cfg: PipelineConfig,
    config_arg: str | None,
    overrides: list[str],
    folder: Path,
    run_dir: Path,
    after: str | None,
    venv: str | None,
) -> Submitted:
    """Submit one step (after job ids ``after``, colon-separated): its job, its log and what it
    waits on (``after``, or the array of its parts)."""
    import subprocess

    from suite.launch.submit import Resources, _executor

    s = cfg.slurm
    stage = STAGES[step.stage]
    name = f"synmed-{step.label.replace('/', '-')}"
    if stage.kind == "ray":
        sbatch = Path(__file__).resolve().parents[2] / "slurm" / "sample_ray.sbatch"
        if not sbatch.is_file():
            raise SynmedError(f"{sbatch} is missing", "run from a synmed-suite checkout")
        tag = step.label.replace("/", "-")
        command = ["sbatch", "--parsable", f"--nodes={s.nodes}", f"--time={s.time_min}",
                   f"--cpus-per-task={s.cpus_per_task}", f"--chdir={run_dir.resolve()}",
                   f"--output={folder}/%j_{tag}.out", f"--job-name={name}"]  # fmt: skip
        if s.partition:
            command.append(f"--partition={s.partition}")
        # always explicit: the script's own #SBATCH default asks for GPUs
        command.append(f"--gpus-per-node={s.gpus_per_node}")
        if s.mem_gb:
            command.append(f"--mem={int(s.mem_gb * 1024)}M")
        if after:
            command += [f"--dependency=afterok:{after}", "--kill-on-invalid-dep=yes"]
        venv = venv or str(Path(sys.executable).parent.parent)
        command.append(f"--export=ALL,SYNMED_VENV={venv}")
        fold = [] if step.fold is None else ["--fold", str(step.fold)]
        command += [str(sbatch), "run", *([config_arg] if config_arg else []), *overrides,
                    "--only", step.stage, *fold, "--on", "local"]  # fmt: skip
        folder.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(command, capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise SynmedError(
                f"sbatch of stage {step.label} failed: {proc.stderr.strip()}",
                "check the slurm: section (partition, time) and that SLURM answers",
            )
        job_id = proc.stdout.strip().split(";")[0]
        return Submitted(job_id, f"{folder}/{job_id}_{tag}.out", after)
    training = stage.kind == "train"
    res = Resources(
        nodes=s.nodes if training else 1,
        gpus_per_node=s.gpus_per_node,
        tasks_per_node=None if training else 1,
        cpus_per_task=s.cpus_per_task,
        mem_gb=s.mem_gb,
        partition=s.partition,
        time_min=s.time_min,
    )
    executor = _executor(folder, name, res, after)
    args = (config_arg, overrides, step.stage, False, step.fold)
    parts = stage.parts(step_run(cfg, step, run_dir)[0])
    array_tasks: tuple[tuple[str, str, str], ...] = ()
    if parts:  # one array task per part (a per-cluster generator each), then one job joins them
        with executor.batch():
            tasks = [executor.submit(StageInJob(), *args, part) for part in parts]
        array = str(tasks[0].job_id).split("_")[0]
        print(f"synmed run: {step.label}: parts {parts[0]}..{parts[-1]} submitted as array job "
              f"{array}" + (f" (after {after})" if after else ""), flush=True)  # fmt: skip
        join = Resources(nodes=1, tasks_per_node=1, cpus_per_task=s.cpus_per_task,
                         mem_gb=s.mem_gb, partition=s.partition, time_min=s.time_min)  # fmt: skip
        executor, after = _executor(folder, f"{name}-join", join, array), array
        array_tasks = tuple(
            (f"{step.label}[{part}]", str(t.job_id), str(t.paths.stderr).replace("%t", "0"))
            for part, t in zip(parts, tasks)
        )
    job = executor.submit(StageInJob(), *args)
    return Submitted(str(job.job_id), str(job.paths.stderr).replace("%t", "0"), after, array_tasks)
