"""Shared fixtures: real data locations, and the real SLURM / Ray that integration tests use.

A test that needs SLURM takes the ``slurm`` fixture. Where no controller answers it is skipped with
the reason, except under ``CI=true``, where a missing SLURM fails the test: CI brings one up
(scripts/local-slurm.sh), so its absence there is a broken rig, not a reason to skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

# Ray reads these once, when it is first imported (possibly while collecting a test module): set
# them before anything imports it, so every Ray started by the tests binds 127.0.0.1 only.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

REPO = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _need(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: the test rig must provide it; see scripts/local-slurm.sh)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def slurm() -> dict[str, str]:
    """A SLURM controller that answers, with its partition and node names."""
    if shutil.which("sinfo") is None:
        _need("SLURM is not installed (run `sudo scripts/local-slurm.sh up`)")
    proc = subprocess.run(
        ["sinfo", "-h", "-o", "%P %N %t"], capture_output=True, text=True, timeout=30
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        _need(f"no SLURM controller answers sinfo ({proc.stderr.strip() or 'no partitions'})")
    partition, nodes, _state = proc.stdout.split()[:3]
    return {"partition": partition.rstrip("*"), "nodes": nodes}


@pytest.fixture(scope="session")
def ray_local():
    """A real local Ray on 127.0.0.1 with 2 CPUs, shut down at the end of the session."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def netns_slurm(slurm: dict[str, str]):
    """A second SLURM whose nodes are network hosts of their own (scripts/netns-slurm.sh): namespaces
    on a private bridge. Needs the loopback cluster's munge (hence ``slurm``); stopped at the end."""
    script = REPO / "scripts" / "netns-slurm.sh"
    if os.geteuid() != 0:
        _need("network namespaces need root (scripts/netns-slurm.sh)")
    if shutil.which("ip") is None or shutil.which("nsenter") is None:
        _need("ip and nsenter are missing (apt-get install iproute2 util-linux)")
    up = subprocess.run(["bash", str(script), "up"], capture_output=True, text=True, timeout=180)
    if up.returncode != 0:
        subprocess.run(["bash", str(script), "down"], capture_output=True, text=True, timeout=120)
        pytest.fail(f"scripts/netns-slurm.sh up failed:\n{up.stderr[-2000:]}")
    yield {"partition": "net", "exec": ["bash", str(script), "exec"]}
    subprocess.run(["bash", str(script), "down"], capture_output=True, text=True, timeout=120)
