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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from suite.artifacts.files import atomic_write_text
from suite.config import dump_yaml, load_config
from suite.errors import ConfigError, SynmedError
from suite.pipeline.config import STAGE_ORDER, PipelineConfig, check_generator_input
from suite.pipeline.stages import STAGES, Context, digest

RECORDS = "stages"


@dataclass(slots=True)
class Step:
    stage: str
    digest: str
    action: str  # "run" | "skip" (complete, same digest)
    reason: str


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
) -> tuple[Path, list[Step]]:
    """The ordered steps of this invocation; every stage config is checked first."""
    run_dir = Path(cfg.run.out_dir) / cfg.run.name
    ctx = Context(cfg, run_dir)
    stages = [s for s in STAGE_ORDER if s in cfg.stages]
    for name in (until, only):
        if name is not None and name not in stages:
            raise ConfigError(
                f"stage {name!r} is not in this run's stages", f"stages: {', '.join(stages)}"
            )
    check_generator_input(cfg)
    digests: dict[str, str] = {}
    for name in stages:
        stage = STAGES[name]
        stage.check(ctx)
        upstream = []
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
    selected = [only] if only else stages[: stages.index(until) + 1] if until else stages
    steps = []
    for name in selected:
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
    return run_dir, steps


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
            print(f"synmed run: {step.stage}: skipped ({step.reason})", flush=True)
            continue
        print(f"synmed run: {step.stage}: running ({step.reason})", flush=True)
        if force:
            remove_outputs(run_dir, step.stage)
        t0 = time.time()
        outputs = run_stage(cfg, step, run_dir)
        if outputs is None:
            print(f"synmed run: {step.stage}: stopped by a signal; run again to continue")
            return False
        print(f"synmed run: {step.stage}: done in {time.time() - t0:.0f} s", flush=True)
    return True


# -- SLURM -------------------------------------------------------------------------------------------


class StageInJob:
    """What a Submitit job of `synmed run --on slurm` calls: one stage, from the config file."""

    def __call__(self, config: str | None, overrides: list[str], stage: str, force: bool) -> str:
        cfg = load_config(config, overrides, schema=PipelineConfig)
        run_dir, steps = plan(cfg, only=stage, force=force)
        if steps[0].action == "run":  # --force removed the old outputs at submission
            run_stage(cfg, steps[0], run_dir)
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
    """Submit every stage to run as a job depending on the one before; returns (stage, job id).

    Training stages run as Submitit jobs of ``slurm.nodes`` nodes (one task per GPU, or one per
    node without GPUs); Ray stages through slurm/sample_ray.sbatch (a Ray head plus workers);
    the rest as one-task Submitit jobs.
    """
    import subprocess

    from suite.launch.submit import Resources, _executor

    s = cfg.slurm
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "run.yaml", dump_yaml(cfg))
    folder = run_dir.resolve() / "submitit"
    jobs: list[tuple[str, str]] = []
    after: str | None = None
    config_arg = str(Path(config).resolve()) if config else None
    # jobs start in other folders: pin the run folder to the one planned here
    overrides = [*overrides, f"run.out_dir={Path(cfg.run.out_dir).resolve()}"]
    for step in steps:
        if step.action == "skip":
            continue
        stage = STAGES[step.stage]
        if force:
            remove_outputs(run_dir, step.stage)
        if stage.kind == "ray":
            sbatch = Path(__file__).resolve().parents[2] / "slurm" / "sample_ray.sbatch"
            if not sbatch.is_file():
                raise SynmedError(f"{sbatch} is missing", "run from a synmed-suite checkout")
            command = ["sbatch", "--parsable", f"--nodes={s.nodes}", f"--time={s.time_min}",
                       f"--cpus-per-task={s.cpus_per_task}", f"--chdir={run_dir.resolve()}",
                       f"--output={folder}/%j_{step.stage}.out",
                       f"--job-name=synmed-{step.stage}"]  # fmt: skip
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
            command += [str(sbatch), "run", *([config_arg] if config_arg else []), *overrides,
                        "--only", step.stage, "--on", "local"]  # fmt: skip
            folder.mkdir(parents=True, exist_ok=True)
            proc = subprocess.run(command, capture_output=True, text=True, timeout=60)
            if proc.returncode != 0:
                raise SynmedError(
                    f"sbatch of stage {step.stage} failed: {proc.stderr.strip()}",
                    "check the slurm: section (partition, time) and that SLURM answers",
                )
            job_id = proc.stdout.strip().split(";")[0]
            log = f"{folder}/{job_id}_{step.stage}.out"
        else:
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
            executor = _executor(folder, f"synmed-{step.stage}", res, after)
            job = executor.submit(StageInJob(), config_arg, overrides, step.stage, False)
            job_id = str(job.job_id)
            log = str(job.paths.stderr).replace("%t", "0")
        print(f"synmed run: {step.stage}: submitted as job {job_id}"
              + (f" (after {after})" if after else ""), flush=True)  # fmt: skip
        jobs.append((step.stage, job_id))
        after = job_id
        with open(run_dir / "jobs.jsonl", "a") as f:  # what `synmed jobs --runs` lists
            f.write(json.dumps({"job_id": job_id, "stage": step.stage, "run": str(run_dir.resolve()),
                                "stderr": log, "command": shlex.join(
                                    ["synmed", "run", config_arg or "", *overrides])}) + "\n")  # fmt: skip
    return jobs
