"""`synmed submit` and `synmed jobs`: stages as Submitit jobs on SLURM, and a record of them.

The submitted callable is a :class:`submitit.helpers.Checkpointable` that carries the *resolved*
config (a plain dict), not a path, so a requeued job trains exactly what was submitted even if the
YAML file changed since. Every task of the job runs the same callable; the stage reads its rank from
SLURM's variables (one task per GPU). Each submission is appended to ``<run.out_dir>/jobs.jsonl``.
"""

from __future__ import annotations

import importlib
import json
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import submitit

from suite.config import SuiteConfig, from_dict, load_config, to_dict
from suite.errors import ConfigError

# stage name -> "module:function(cfg: SuiteConfig, resume=...) -> dict"
STAGES: dict[str, str] = {
    "train-generator": "suite.generative.train:train_generator",
    "pretrain": "suite.ssl.train:pretrain",
}
JOBS_FILE = "jobs.jsonl"


class StageJob(submitit.helpers.Checkpointable):
    """What runs in every task of a submitted job. Requeued jobs call it again with the same
    arguments and continue from the run's latest checkpoint (``resume="auto"``)."""

    def __call__(self, stage: str, config: dict[str, Any]) -> dict[str, Any]:
        module, _, name = STAGES[stage].partition(":")
        run_stage = getattr(importlib.import_module(module), name)
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
) -> list[submitit.Job]:
    """Submit one job (or one per sweep value, as a job array) and record each in jobs.jsonl."""
    if stage not in STAGES:
        raise ConfigError(f"unknown stage {stage!r}", f"stages: {', '.join(STAGES)}")
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
    out_dir = Path(configs[0].run.out_dir).resolve()
    folder = out_dir / "submitit"
    executor = _executor(folder, f"synmed-{stage}", res, after)
    if len(configs) == 1:
        jobs = [executor.submit(StageJob(), stage, to_dict(configs[0]))]
    else:
        with executor.batch():
            jobs = [executor.submit(StageJob(), stage, to_dict(cfg)) for cfg in configs]
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / JOBS_FILE, "a") as f:
        for job, cfg in zip(jobs, configs):
            f.write(json.dumps(_record(job, stage, cfg, config_path, overrides, res, after)) + "\n")
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


def job_states(job_ids: list[str]) -> dict[str, str]:
    """Current SLURM state of each job: sacct (finished jobs too), then squeue for what it missed."""
    states: dict[str, str] = {}
    if not job_ids:
        return states
    proc = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", ",".join(job_ids)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if proc.returncode == 0:
        for line in proc.stdout.splitlines():
            job, _, state = line.partition("|")
            states[job] = state.split()[0] if state else "UNKNOWN"
    missing = [j for j in job_ids if j not in states]
    if missing:
        proc = subprocess.run(
            ["squeue", "-h", "-o", "%i|%T", "-j", ",".join(missing)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        for line in proc.stdout.splitlines():
            job, _, state = line.partition("|")
            states[job] = state
    return {j: states.get(j, "UNKNOWN") for j in job_ids}


def format_jobs(records: list[dict[str, Any]], states: dict[str, str]) -> str:
    if not records:
        return "no jobs submitted from this run folder (synmed submit ...)"
    rows = [("JOBID", "STAGE", "STATE", "RUN", "LOG")]
    rows += [
        (r["job_id"], r["stage"], states.get(r["job_id"], "UNKNOWN"), r["run"], r["stderr"])
        for r in records
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row[:4], widths)) + "  " + row[4] for row in rows
    )


def wait_for(jobs: list[submitit.Job], poll_s: float = 5.0) -> dict[str, str]:
    """Wait until every job has ended; return the final SLURM state of each."""
    ids = [str(j.job_id) for j in jobs]
    while True:
        states = job_states(ids)
        if all(
            s
            not in {
                "PENDING",
                "RUNNING",
                "REQUEUED",
                "COMPLETING",
                "CONFIGURING",
                "RESIZING",
                "SUSPENDED",
                "UNKNOWN",
            }
            for s in states.values()
        ):
            return states
        time.sleep(poll_s)
