"""Reading the distributed layout from launcher and SLURM variables (the real SLURM runs in
tests/integration/test_slurm_train.py and test_submit.py)."""

from __future__ import annotations

import signal

from suite.launch.env import accelerate_launch_args, detect, job_port, slurm_hostnames
from suite.launch.preemption import PreemptionGuard


def test_hostnames() -> None:
    assert slurm_hostnames("n[1-2]") == ["n1", "n2"]
    assert slurm_hostnames("gpu[01-03,07],cpu5") == ["gpu01", "gpu02", "gpu03", "gpu07", "cpu5"]
    assert slurm_hostnames("a[8-10]-ib") == ["a8-ib", "a9-ib", "a10-ib"]


def test_one_task_per_gpu_layout() -> None:
    env = {"SLURM_JOB_ID": "4242", "SLURM_PROCID": "5", "SLURM_LOCALID": "1", "SLURM_NODEID": "2",
           "SLURM_NTASKS": "8", "SLURM_JOB_NODELIST": "gpu[01-04]"}  # fmt: skip
    dist = detect(env)
    assert (dist.rank, dist.local_rank, dist.world_size, dist.node_rank) == (5, 1, 8, 2)
    assert (dist.num_nodes, dist.local_world_size, dist.master_addr) == (4, 2, "gpu01")
    assert dist.master_port == job_port("4242") and dist.source == "slurm"
    assert dist.torch_env()["MASTER_ADDR"] == "gpu01" and dist.torch_env()["RANK"] == "5"


def test_launcher_variables_win_over_slurm() -> None:
    env = {"SLURM_JOB_ID": "1", "SLURM_PROCID": "0", "SLURM_NTASKS": "1", "SLURM_JOB_NODELIST": "n1",
           "RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2",
           "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "1234", "GROUP_RANK": "1"}  # fmt: skip
    dist = detect(env)
    assert (dist.rank, dist.world_size, dist.node_rank, dist.num_nodes, dist.source) == (
        3,
        4,
        1,
        2,
        "torchrun",
    )


def test_single_process() -> None:
    assert detect({}).world_size == 1 and detect({}).source == "single"


def test_accelerate_args_for_one_task_per_node() -> None:
    env = {"SLURM_JOB_ID": "77", "SLURM_PROCID": "1", "SLURM_NODEID": "1", "SLURM_NTASKS": "2",
           "SLURM_JOB_NODELIST": "n[1-2]"}  # fmt: skip
    args = accelerate_launch_args(detect(env), processes_per_node=4)
    pairs = {a: b for a, b in zip(args, args[1:]) if a.startswith("--") and not b.startswith("--")}
    assert args[0] == "--multi_gpu"
    assert pairs["--num_machines"] == "2" and pairs["--machine_rank"] == "1"
    assert pairs["--num_processes"] == "8" and pairs["--main_process_ip"] == "n1"


def test_guard_turns_signals_into_a_flag() -> None:
    before = signal.getsignal(signal.SIGTERM)  # whatever the test process had (Ray, pytest plugins)
    guard = PreemptionGuard()
    try:
        assert not guard.requested()
        signal.raise_signal(signal.SIGUSR2)
        assert guard.requested() and guard.time_limit
        signal.raise_signal(signal.SIGTERM)  # the first signal is kept
        assert guard.received == signal.SIGUSR2
    finally:
        guard.restore()
    assert signal.getsignal(signal.SIGTERM) is before
