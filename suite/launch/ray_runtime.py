"""Starting or joining Ray for the suite's Ray Data jobs (sampling, feature extraction).

With no address an embedded local Ray starts on 127.0.0.1 and stops with the job; with an address
(``--ray-address``, or ``RAY_ADDRESS``, e.g. set by slurm/sample_ray.sbatch) the job joins that
cluster and leaves it running.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

# Read by Ray at import time: without it Ray binds the machine's external address even for a local
# instance. Set before the first `import ray` anywhere in the process.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


@contextlib.contextmanager
def ray_session(address: str | None = None, *, num_cpus: int | None = None) -> Iterator[Any]:
    """Yield the ``ray`` module, initialised; shut down on exit only if this call started Ray."""
    import ray

    address = address or os.environ.get("RAY_ADDRESS")
    if ray.is_initialized():
        yield ray
        return
    if address:
        ray.init(address=address, log_to_driver=True)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1")
    try:
        yield ray
    finally:
        ray.shutdown()


def actor_resources(ray: Any, workers: int) -> dict[str, float]:
    """Per-actor resources: one GPU each where the cluster has GPUs; otherwise a fraction of a CPU,
    so the read tasks that feed the pool still get a CPU (a pool holding every CPU deadlocks)."""
    gpus = ray.cluster_resources().get("GPU", 0)
    if gpus >= 1:
        return {"num_gpus": 1}
    cpus = ray.cluster_resources().get("CPU", 1)
    return {"num_cpus": max(0.25, min(1.0, (cpus - 1) / max(1, workers)))}
