"""One task per node: start ``accelerate launch`` with one process per GPU, wired from SLURM.

``synmed launch --procs-per-node 4 -- train generator CONFIG ...`` runs as the single SLURM task of a
node. It reads the node's place in the job (suite/launch/env.py), builds the ``accelerate launch``
arguments (machine rank, number of machines and processes, main process address and port: the
values peers pass through escaped ``\\$SLURM_NODEID`` in sbatch scripts) and runs the synmed command
under it.

Signals: SLURM's time-limit warning (SIGUSR2) would kill the torch elastic agent, which does not
handle it, before the workers could save. The agent is started with SIGUSR2 ignored (the workers
install their own handler), and this wrapper forwards a SIGUSR2 it receives to every worker.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from types import FrameType

import psutil

from suite.launch.env import accelerate_launch_args, detect

# Variables of the node-level task that must not leak into the workers: the elastic agent sets
# each worker's own RANK, LOCAL_RANK, WORLD_SIZE... and the workers must not mistake the SLURM task's.
_NODE_LEVEL = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "NODE_RANK")


def launch_per_node(procs_per_node: int, synmed_args: list[str]) -> int:
    dist = detect()
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch",
        *accelerate_launch_args(dist, procs_per_node),
        "-m", "suite", *synmed_args,
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in _NODE_LEVEL}
    print(f"synmed launch: node {dist.node_rank}/{dist.num_nodes}, {procs_per_node} process(es), "
          f"rendezvous {dist.master_addr}:{dist.master_port}", flush=True)  # fmt: skip
    previous = signal.signal(signal.SIGUSR2, signal.SIG_IGN)  # inherited by the agent across exec
    agent = subprocess.Popen(cmd, env=env)

    def forward(signum: int, frame: FrameType | None) -> None:
        for child in psutil.Process(agent.pid).children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):  # a worker that already exited
                child.send_signal(signum)

    signal.signal(signal.SIGUSR2, forward)
    try:
        return agent.wait()
    finally:
        signal.signal(signal.SIGUSR2, previous)
