"""Shared fixtures: real data locations, and the real SLURM / Ray that integration tests use.

A test that needs SLURM takes the ``slurm`` fixture; one that needs real data or an installed
package calls :func:`need` or :func:`need_module`. Where the thing is missing the test is skipped
with the reason, except under ``CI=true``, where it fails: CI's rig provides all of them
(scripts/test.sh installs the data and packages and brings up scripts/local-slurm.sh), so an absence
there is a broken rig, and a skip would pass a run in which those tests never ran.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest

# Ray reads these once, when it is first imported (possibly while collecting a test module): set
# them before anything imports it, so every Ray started by the tests binds 127.0.0.1 only.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

REPO = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(reason: str) -> NoReturn:
    """Skip for a missing prerequisite (SLURM, real data, a package), or fail under CI=true.

    Callable in a test, a fixture or at module level (then the module's collection fails in CI).
    """
    if IN_CI:
        pytest.fail(
            f"{reason} (CI=true: the test rig must provide it; scripts/test.sh sets it up)",
            pytrace=False,
        )
    pytest.skip(reason, allow_module_level=True)


def need_module(name: str, fix: str) -> ModuleType:
    """``import name``, or :func:`need` with ``fix`` (how to install it) if it is missing."""
    try:
        return importlib.import_module(name)
    except ImportError as err:
        need(f"needs the {name!r} package ({fix}): {err}")


@pytest.fixture(autouse=True)
def _torch_threads_restored() -> Iterator[None]:
    """Give back torch's thread count after each test: a test (or code it runs in-process, e.g. a
    segmentation run's ``train.threads``) that lowers it would leave every later test on fewer
    cores."""
    torch = sys.modules.get("torch")  # imported by whatever needs it; never imported here
    before = torch.get_num_threads() if torch is not None else None
    yield
    if torch is not None and before is not None and torch.get_num_threads() != before:
        torch.set_num_threads(before)


@pytest.fixture(scope="session")
def slurm() -> dict[str, str]:
    """A SLURM controller that answers, with its partition and node names."""
    if shutil.which("sinfo") is None:
        need("SLURM is not installed (run `sudo scripts/local-slurm.sh up`)")
    proc = subprocess.run(
        ["sinfo", "-h", "-o", "%P %N %t"], capture_output=True, text=True, timeout=30
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        need(f"no SLURM controller answers sinfo ({proc.stderr.strip() or 'no partitions'})")
    partition, nodes, _state = proc.stdout.split()[:3]
    return {"partition": partition.rstrip("*"), "nodes": nodes}


@pytest.fixture(scope="session")
def ray_local():
    """A real local Ray on 127.0.0.1 with 2 CPUs, shut down at the end of the session."""
    import ray

    # "local": a new instance, never whatever cluster /tmp/ray/ray_current_cluster names
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def ray_address(ray_local) -> str:
    """The session Ray's GCS address. A `synmed` process given it (``--ray-address`` or
    ``RAY_ADDRESS``) joins that Ray instead of starting one of its own, which costs 10-20 s of a
    2-core machine per command."""
    return ray_local.get_runtime_context().gcs_address


@pytest.fixture(scope="session")
def netns_slurm(slurm: dict[str, str]):
    """A second SLURM whose nodes are network hosts of their own (scripts/netns-slurm.sh): namespaces
    on a private bridge. Needs the loopback cluster's munge (hence ``slurm``); stopped at the end."""
    script = REPO / "scripts" / "netns-slurm.sh"
    if os.geteuid() != 0:
        need("network namespaces need root (scripts/netns-slurm.sh)")
    if shutil.which("ip") is None or shutil.which("nsenter") is None:
        need("ip and nsenter are missing (apt-get install iproute2 util-linux)")
    up = subprocess.run(["bash", str(script), "up"], capture_output=True, text=True, timeout=180)
    if up.returncode != 0:
        subprocess.run(["bash", str(script), "down"], capture_output=True, text=True, timeout=120)
        pytest.fail(f"scripts/netns-slurm.sh up failed:\n{up.stderr[-2000:]}")
    yield {"partition": "net", "exec": ["bash", str(script), "exec"]}
    subprocess.run(["bash", str(script), "down"], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random-weight Stable Diffusion folder of `synmed models tiny-sd` (32 px, seed 0),
    written once per session: every test of the latent-diffusion families runs on it."""
    from suite.models.tiny_sd import write_tiny_sd

    return write_tiny_sd(tmp_path_factory.mktemp("tiny-sd") / "sd", seed=0)
