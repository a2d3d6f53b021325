"""`synmed submit` and `synmed jobs`: stages as Submitit jobs on SLURM, and a record of them.

The submitted callable is a :class:`submitit.helpers.Checkpointable` that carries the *resolved*
config (a plain dict), not a path, so a requeued job trains exactly what was submitted even if the
YAML file changed since. Every task of the job runs the same callable; the stage reads its rank from
SLURM's variables (one task per GPU). Each submission is appended to ``<run.out_dir>/jobs.jsonl``.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import submitit

from suite.config import from_dict, to_dict
from suite.errors import ConfigError
from suite.registry import Registry
from suite.schema import SuiteConfig, load_config

# stage name -> "module:function(cfg: SuiteConfig, resume=...) -> dict"
STAGES: Registry[Any] = Registry(
    "stage",
    {
        "train-generator": "suite.generative.train:train_generator",
        "pretrain": "suite.ssl.train:pretrain",
    },
)
JOBS_FILE = "jobs.jsonl"


class StageJob(submitit.helpers.Checkpointable):
    """What runs in every task of a submitted job. Requeued jobs call it again with the same
    arguments and continue from the run's latest checkpoint (``resume="auto"``)."""

    def __call__(self, stage: str, config: dict[str, Any]) -> dict[str, Any]:
        run_stage = STAGES.get(stage)
        cfg = from_dict(SuiteConfig, config, source=f"submitted {stage} config")
        return run_stage(cfg, resume="auto")


@dataclass(slots=True)
class Resources:
    nodes: int = 1
    gpus_per_node: int = 0
    tasks_per_node: int | None = None  # default: one task per GPU, or 1 without GPUs
    cpus_per_task: int = 2
    mem_gb: float | None = None
    partition: str | None = None
    time_min: int = 60
    signal_delay_s: int = 120  # SIGUSR2 this long before the time limit: save and requeue


class MergeClassesJob:
    """The step after a per-class array: merge the class runs' exports into ``RUN/export``."""

    def __call__(self, parts: list[str], run: str) -> str:
        from suite.generative.per_class import merge_class_exports

        return merge_class_exports([Path(p) for p in parts], Path(run))


def parse_time(text: str) -> int:
    """Minutes from ``90``, ``1:30:00`` or ``2-00:00:00`` (SLURM's formats)."""
    days = 0
    if "-" in text:
        d, text = text.split("-", 1)
        days = int(d)
    parts = [int(p) for p in text.split(":")]
    if len(parts) == 1:
        minutes = parts[0]
    elif len(parts) == 2:
        minutes = parts[0] * 60 + parts[1]
    else:
        minutes = parts[0] * 60 + parts[1] + (1 if parts[2] else 0)
    return days * 24 * 60 + minutes


def parse_sweep(spec: str) -> tuple[str, list[str]]:
    """``run.seed=0,1,2`` -> ("run.seed", ["0", "1", "2"])."""
    key, _, values = spec.partition("=")
    if not key or not values:
        raise ConfigError(f"--array {spec!r} is not KEY=V1,V2,...", "e.g. --array run.seed=0,1,2")
    return key, values.split(",")


def _executor(folder: Path, name: str, res: Resources, after: str | None) -> submitit.AutoExecutor:
    executor = submitit.AutoExecutor(
        folder=folder / "%j", cluster="slurm", slurm_python=shlex.quote(sys.executable)
    )
    tasks = res.tasks_per_node or max(1, res.gpus_per_node)
    params: dict[str, Any] = {
        "name": name,
        "nodes": res.nodes,
        "tasks_per_node": tasks,
        "cpus_per_task": res.cpus_per_task,
        "timeout_min": res.time_min,
        "slurm_signal_delay_s": res.signal_delay_s,
        "slurm_additional_parameters": {"requeue": True, "open-mode": "append"},
    }
    if res.gpus_per_node:
        params["gpus_per_node"] = res.gpus_per_node
    if res.mem_gb is not None:
        params["mem_gb"] = res.mem_gb
    if res.partition:
        params["slurm_partition"] = res.partition
    if after:
        params["slurm_additional_parameters"]["dependency"] = f"afterok:{after}"
        # a failed stage cancels the ones after it instead of leaving them pending for ever
        params["slurm_additional_parameters"]["kill-on-invalid-dep"] = "yes"
    executor.update_parameters(**params)
    return executor


def submit(
    stage: str,
    config_path: str | None,
    overrides: list[str],
    res: Resources,
    *,
    sweep: str | None = None,
    after: str | None = None,
    each_class: bool = False,
) -> list[submitit.Job]:
    """Submit one job (or one per sweep value, as a job array) and record each in jobs.jsonl.

    ``each_class``: a per_class DCGAN as one array task per class (suite/generative/per_class.py),
    then one job that merges their exports into RUN/export once every task completed."""
    STAGES.get(stage)  # an unknown stage: one error listing the stages, before any job
    if each_class and (sweep or stage != "train-generator"):
        raise ConfigError(
            f"--each-class with {'--array' if sweep else f'stage {stage}'}",
            "--each-class submits train-generator only, without --array (sweep with one "
            "submit per value)",
        )
    variants: list[list[str]] = [[]]
    if sweep:
        key, values = parse_sweep(sweep)
        variants = [[f"{key}={v}"] for v in values]
    configs: list[SuiteConfig] = []
    for extra in variants:
        cfg = load_config(config_path, [*overrides, *extra])
        if sweep:  # every array element gets its own run folder
            cfg.run.name = f"{cfg.run.name}-{extra[0].split('=', 1)[0].split('.')[-1]}{extra[0].split('=', 1)[1]}"
        configs.append(cfg)
    base = configs[0]
    if each_class:
        from suite.generative.per_class import class_configs

        configs = class_configs(base)
    out_dir = Path(configs[0].run.out_dir).resolve()
    folder = out_dir / "submitit"
    executor = _executor(folder, f"synmed-{stage}", res, after)
    if len(configs) == 1:
        jobs = [executor.submit(StageJob(), stage, to_dict(configs[0]))]
    else:
        with executor.batch():
            jobs = [executor.submit(StageJob(), stage, to_dict(cfg)) for cfg in configs]
    records = [(job, stage, cfg, res, after) for job, cfg in zip(jobs, configs)]
    if each_class:
        array_id = str(jobs[0].job_id).split("_")[0]
        merge_res = Resources(
            partition=res.partition, cpus_per_task=1, mem_gb=res.mem_gb, time_min=30
        )
        merger = _executor(folder, "synmed-merge-classes", merge_res, array_id)
        parts = [str((Path(c.run.out_dir) / c.run.name).resolve()) for c in configs]
        run = str((Path(base.run.out_dir) / base.run.name).resolve())
        merge = merger.submit(MergeClassesJob(), parts, run)
        jobs.append(merge)
        records.append((merge, "merge-classes", base, merge_res, array_id))
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / JOBS_FILE, "a") as f:
        for job, name, cfg, used, dep in records:
            f.write(json.dumps(_record(job, name, cfg, config_path, overrides, used, dep)) + "\n")
    return jobs


def _record(job: submitit.Job, stage: str, cfg: SuiteConfig, config_path: str | None, overrides: list[str],
            res: Resources, after: str | None) -> dict[str, Any]:  # fmt: skip
    return {
        "job_id": str(job.job_id),
        "stage": stage,
        "run": str((Path(cfg.run.out_dir) / cfg.run.name).resolve()),
        "config": str(Path(config_path).resolve()) if config_path else None,
        "overrides": overrides,
        "nodes": res.nodes,
        "gpus_per_node": res.gpus_per_node,
        "after": after,
        "stdout": str(job.paths.stdout).replace("%t", "0"),
        "stderr": str(job.paths.stderr).replace("%t", "0"),
        "submitted": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


# -- synmed jobs ------------------------------------------------------------------------------------


def read_jobs(out_dir: Path) -> list[dict[str, Any]]:
    path = Path(out_dir) / JOBS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# States in which a job may still run (again); any other state is final.
UNFINISHED_STATES = frozenset({
    "PENDING", "RUNNING", "REQUEUED", "COMPLETING", "CONFIGURING", "RESIZING", "SUSPENDED",
    "UNKNOWN",
})  # fmt: skip
# Not a SLURM state: the controller answers but no longer knows the job (it drops finished jobs
# MinJobAge seconds after they end) and there is no accounting to ask.
PURGED = "PURGED"
UNKNOWN = "UNKNOWN"  # neither the controller nor accounting answered: ask again later


class JobState(str):
    """A job's SLURM state, compared and printed as the state name (``== "COMPLETED"``), with its
    exit code (``"1:0"``, SLURM's exit:signal; ``""`` when not known) and where both came from."""

    exit_code: str
    source: str

    def __new__(cls, state: str, exit_code: str = "", source: str = "") -> JobState:
        obj = super().__new__(cls, state)
        obj.exit_code = exit_code
        obj.source = source
        return obj

    @property
    def final(self) -> bool:
        return str(self) not in UNFINISHED_STATES


def _slurm(cmd: list[str]) -> subprocess.CompletedProcess[str] | None:
    """Run a SLURM client; None when it is not installed or does not answer in time."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None


def _from_controller(job_id: str) -> JobState | None:
    """State and exit code from ``scontrol show job``: the controller keeps finished jobs for
    MinJobAge seconds, which is what works on a cluster without accounting. ``PURGED`` when the
    controller answers that it does not know the job; None when it does not answer."""
    proc = _slurm(["scontrol", "-o", "show", "job", job_id])
    if proc is None:
        return None
    if proc.returncode != 0:
        return JobState(PURGED, source="scontrol") if "Invalid job id" in proc.stderr else None
    records = []
    for line in proc.stdout.splitlines():
        fields: dict[str, str] = {}
        for item in line.split():
            key, eq, value = item.partition("=")
            if eq:
                fields.setdefault(key, value)  # later free-text fields may hold "KEY=" too
        records.append(fields)
    # Asked about one id, scontrol prints that job (or, for a task of a pending array, the array's
    # line): an exact match first, else its first line.
    exact = [f for f in records if job_id in (f.get("JobId"), _task_id(f))]
    fields = (exact or records or [{}])[0]
    if "JobState" not in fields:
        return None
    return JobState(fields["JobState"], fields.get("ExitCode", ""), "scontrol")


def _task_id(fields: dict[str, str]) -> str:
    return f"{fields.get('ArrayJobId')}_{fields.get('ArrayTaskId')}"


def _from_accounting(job_ids: list[str]) -> dict[str, JobState]:
    """What sacct knows; empty when accounting is off (``accounting_storage/none``: sacct fails)
    or slurmdbd does not answer."""
    proc = _slurm(
        ["sacct", "-n", "-X", "-P", "-o", "JobID,State,ExitCode", "-j", ",".join(job_ids)]
    )
    if proc is None or proc.returncode != 0:
        return {}
    found: dict[str, JobState] = {}
    for line in proc.stdout.splitlines():
        job, _, rest = line.partition("|")
        state, _, exit_code = rest.partition("|")
        if job in job_ids:
            # "CANCELLED by 0" -> CANCELLED
            found[job] = JobState(state.split()[0] if state else UNKNOWN, exit_code, "sacct")
    return found


def job_states(job_ids: list[str]) -> dict[str, JobState]:
    """Current state and exit code of each job.

    The controller first (``scontrol show job``): it is current, while accounting lags it, and it
    is all there is on a cluster without accounting. sacct for the jobs the controller has dropped.
    A job neither knows is ``PURGED`` if the controller answered, else ``UNKNOWN``.
    """
    states: dict[str, JobState] = {}
    for job_id in job_ids:
        state = _from_controller(job_id)
        if state is not None:
            states[job_id] = state
    unresolved = [j for j in job_ids if j not in states or states[j] == PURGED]
    if unresolved:
        states.update(_from_accounting(unresolved))
    return {j: states.get(j, JobState(UNKNOWN)) for j in job_ids}


def format_jobs(records: list[dict[str, Any]], states: dict[str, str]) -> str:
    if not records:
        return "no jobs submitted from this run folder (synmed submit ...)"
    rows = [("JOBID", "STAGE", "STATE", "EXIT", "RUN", "LOG")]
    for r in records:
        state = states.get(r["job_id"], UNKNOWN)
        exit_code = getattr(state, "exit_code", "") or "-"
        rows.append((r["job_id"], r["stage"], str(state), exit_code, r["run"], r["stderr"]))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row[:5], widths)) + "  " + row[5] for row in rows
    )


def wait_for(
    jobs: list[submitit.Job], poll_s: float = 2.0, first_poll_s: float = 0.5
) -> dict[str, JobState]:
    """Wait until every job has ended; return the final state of each.

    Polls every ``first_poll_s`` at first, backing off to ``poll_s``: short jobs are seen to end
    within a second, long ones cost the controller one query per job every ``poll_s``.
    """
    ids = [str(j.job_id) for j in jobs]
    delay = first_poll_s
    while True:
        states = job_states(ids)
        if all(s.final for s in states.values()):
            return states
        time.sleep(delay)
        delay = min(poll_s, delay * 1.5)
