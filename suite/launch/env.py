"""The distributed layout of this process, read from the job environment in Python.

Peers build ``torchrun``/``accelerate launch`` command lines in sbatch scripts with escaped
``\\$SLURM_PROCID`` and friends, and get it wrong. Here the layout is read once from the variables
SLURM (or torchrun / accelerate launch) sets, and exported as the ``RANK``/``WORLD_SIZE``/
``MASTER_ADDR``... variables that ``torch.distributed`` and Accelerate read.

Two SLURM layouts work:

- one task per GPU (``srun --ntasks-per-node=G``): every task is one rank, exported as is;
- one task per node: the task starts one process per GPU through ``accelerate launch``
  (:func:`accelerate_launch_args` builds its arguments: machine rank, main process address, port).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

# A port per job, so two jobs sharing a node do not collide; stable across a requeue of the same job.
PORT_BASE, PORT_SPAN = 20000, 20000


@dataclass(frozen=True, slots=True)
class DistEnv:
    """Where this process sits in a job."""

    rank: int
    local_rank: int
    world_size: int
    local_world_size: int
    node_rank: int
    num_nodes: int
    master_addr: str
    master_port: int
    source: str  # "torchrun", "slurm" or "single"

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    def torch_env(self) -> dict[str, str]:
        """The variables torch.distributed's env:// rendezvous and Accelerate read."""
        return {
            "RANK": str(self.rank),
            "LOCAL_RANK": str(self.local_rank),
            "WORLD_SIZE": str(self.world_size),
            "LOCAL_WORLD_SIZE": str(self.local_world_size),
            "GROUP_RANK": str(self.node_rank),
            "NODE_RANK": str(self.node_rank),
            "MASTER_ADDR": self.master_addr,
            "MASTER_PORT": str(self.master_port),
        }

    def export(self) -> None:
        os.environ.update(self.torch_env())


def slurm_hostnames(nodelist: str) -> list[str]:
    """Expand a SLURM node list (``gpu[01-03,07],cpu5``) into host names, keeping zero padding."""
    hosts: list[str] = []
    for group in re.findall(r"[^,\[]+(?:\[[^\]]*\])?[^,]*", nodelist):
        match = re.fullmatch(r"([^\[]*)\[([^\]]*)\](.*)", group)
        if match is None:
            hosts.append(group)
            continue
        prefix, ranges, suffix = match.groups()
        for part in ranges.split(","):
            lo, _, hi = part.partition("-")
            width = len(lo)
            for number in range(int(lo), int(hi or lo) + 1):
                hosts.append(f"{prefix}{number:0{width}d}{suffix}")
    return hosts


def job_port(job_id: str) -> int:
    digits = "".join(ch for ch in job_id if ch.isdigit()) or "0"
    return PORT_BASE + int(digits) % PORT_SPAN


def detect(environ: Mapping[str, str] | None = None) -> DistEnv:
    """Read the layout from the environment: a launcher's variables first (torchrun, accelerate
    launch), then SLURM's (srun or a submitit job), else a single process."""
    env = os.environ if environ is None else environ
    if "RANK" in env and "WORLD_SIZE" in env:
        world = int(env["WORLD_SIZE"])
        local_world = int(env.get("LOCAL_WORLD_SIZE", world))
        return DistEnv(
            rank=int(env["RANK"]),
            local_rank=int(env.get("LOCAL_RANK", 0)),
            world_size=world,
            local_world_size=local_world,
            node_rank=int(env.get("GROUP_RANK", env.get("NODE_RANK", 0))),
            num_nodes=max(1, world // max(1, local_world)),
            master_addr=env.get("MASTER_ADDR", "127.0.0.1"),
            master_port=int(env.get("MASTER_PORT", 29500)),
            source="torchrun",
        )
    if "SLURM_JOB_ID" in env and "SLURM_PROCID" in env:
        nodes = slurm_hostnames(env.get("SLURM_JOB_NODELIST", env.get("SLURM_NODELIST", "")))
        tasks = int(env.get("SLURM_NTASKS", 1))
        return DistEnv(
            rank=int(env["SLURM_PROCID"]),
            local_rank=int(env.get("SLURM_LOCALID", 0)),
            world_size=tasks,
            local_world_size=tasks // max(1, len(nodes)) if nodes else tasks,
            node_rank=int(env.get("SLURM_NODEID", 0)),
            num_nodes=max(1, len(nodes)),
            master_addr=env.get("MASTER_ADDR") or (nodes[0] if nodes else "127.0.0.1"),
            master_port=int(env.get("MASTER_PORT") or job_port(env["SLURM_JOB_ID"])),
            source="slurm",
        )
    return DistEnv(0, 0, 1, 1, 0, 1, "127.0.0.1", 29500, "single")


def accelerate_launch_args(
    dist: DistEnv, processes_per_node: int, *, cpu: bool = False
) -> list[str]:
    """``accelerate launch`` options for one task per node starting ``processes_per_node`` ranks."""
    args = [
        "--num_machines", str(dist.num_nodes),
        "--machine_rank", str(dist.node_rank),
        "--num_processes", str(dist.num_nodes * processes_per_node),
        "--main_process_ip", dist.master_addr,
        "--main_process_port", str(dist.master_port),
        "--rdzv_backend", "static",
        "--same_network",
        "--mixed_precision", "no",
        "--dynamo_backend", "no",
    ]  # fmt: skip
    if dist.num_nodes * processes_per_node > 1:
        args.insert(0, "--multi_gpu")  # on a CPU-only node this still means "several processes"
    return args
