"""Starting or joining Ray for the suite's Ray Data jobs (sampling, feature extraction).

With no address an embedded local Ray starts on 127.0.0.1 and stops with the job; with an address
(``--ray-address``, or ``RAY_ADDRESS``, e.g. set by slurm/sample_ray.sbatch) the job joins that
cluster and leaves it running.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from typing import Any

from suite.errors import ConfigError, DataError, ShardError, SynmedError

# Read by Ray at import time: without it Ray binds the machine's external address even for a local
# instance. Set before the first `import ray` anywhere in the process.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


ACTOR_START_TIMEOUT_S = 600


@contextlib.contextmanager
def ray_session(address: str | None = None, *, num_cpus: int | None = None) -> Iterator[Any]:
    """Yield the ``ray`` module, initialised; shut down on exit only if this call started Ray."""
    import ray
    from ray.data import DataContext

    # An actor pool starts work once all its actors hold their model: otherwise the first actor up
    # takes every shard of a short job, and a cluster short of the requested GPUs fails here, after
    # this wait, instead of running on fewer workers than asked for.
    DataContext.get_current().wait_for_min_actors_s = ACTOR_START_TIMEOUT_S

    address = address or os.environ.get("RAY_ADDRESS")
    if ray.is_initialized():
        yield ray
        return
    if address:
        # slurm/sample_ray.sbatch names this node's address: Ray would otherwise find it by
        # connecting towards a public DNS server
        ray.init(
            address=address,
            log_to_driver=True,
            _node_ip_address=os.environ.get("SYNMED_RAY_NODE_IP"),
        )
    else:
        # "local": a Ray of our own. Without it ray.init joins the cluster named in
        # /tmp/ray/ray_current_cluster (anyone's, or a stale one that waits 60 s and dies).
        # Workers at nice 0, not Ray's default 15: here they do the job's work while the driver
        # waits, and on a machine shared with other work a niced actor got half the images/s of
        # the same loop in-process (benchmarks/bench_train_gan.py (b): 0.45x, 1.13-1.38x at nice 0).
        # RAY_worker_niceness, where set, still decides.
        niceness = {} if "RAY_worker_niceness" in os.environ else {"worker_niceness": 0}
        ray.init(
            address="local",
            num_cpus=num_cpus,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            _system_config=niceness or None,
        )
    try:
        yield ray
    finally:
        ray.shutdown()


def actor_resources(ray: Any, workers: int) -> dict[str, Any]:
    """Per-actor resources: one GPU each where the cluster has GPUs; otherwise a fraction of a CPU,
    so the read tasks that feed the pool still get a CPU (a pool holding every CPU deadlocks).

    Actors are spread over the nodes: packed, fractional-CPU actors would all land on one node.
    """
    spread = {"scheduling_strategy": "SPREAD"}
    gpus = ray.cluster_resources().get("GPU", 0)
    if gpus >= 1:
        return {"num_gpus": 1, **spread}
    cpus = ray.cluster_resources().get("CPU", 1)
    return {"num_cpus": max(0.25, min(1.0, (cpus - 1) / max(1, workers))), **spread}


def index_dataset(ray: Any, n: int) -> Any:
    """A Ray dataset of rows ``{"id": i}`` for i < n, one block each, made in the driver.

    Not ``ray.data.range``: its read task asks for a whole CPU next to the actor pool, and on a
    one-CPU allocation (or Ray node) it waits for ever behind the pool's fraction.
    """
    return ray.data.from_items([{"id": i} for i in range(n)], override_num_blocks=n)


# -- errors across the Ray boundary -----------------------------------------------------------------
# Ray Data wraps an exception raised in a UDF in a UserCodeException whose cause does not survive the
# trip to the driver, and logs a stack dump on the way. An actor that meets a SynmedError therefore
# returns it as data (``error_text``) and the driver raises it again (``raise_carried``): the user sees
# one message and its fix, as anywhere else in the suite.


_CARRIED = {c.__name__: c for c in (ConfigError, DataError, ShardError, SynmedError)}


def error_text(err: SynmedError) -> str:
    """A SynmedError as a row value the driver can raise again (as its nearest kind above)."""
    kind = next(c.__name__ for c in type(err).__mro__ if c.__name__ in _CARRIED)
    return json.dumps({"kind": kind, "what": err.what, "fix": err.fix})


def raise_carried(text: str, also: int = 0) -> None:
    """Raise the SynmedError carried by ``error_text`` (``also``: how many more failed likewise)."""
    body = json.loads(text)
    what = body["what"] + (f" (and {also} more shard(s) failed)" if also else "")
    raise _CARRIED.get(body["kind"], SynmedError)(what, body["fix"])


def synmed_cause(err: BaseException) -> SynmedError | None:
    """The SynmedError inside a Ray exception (a remote task's, an actor constructor's), if any,
    as a plain suite error (Ray's wrapper class would print the remote traceback)."""
    seen: set[int] = set()
    stack: list[Any] = [err]
    while stack:
        e = stack.pop()
        if not isinstance(e, BaseException) or id(e) in seen:
            continue
        seen.add(id(e))
        wrapper = type(e).__module__.startswith("ray.")
        if isinstance(e, SynmedError) and not wrapper:
            return e
        # a RayTaskError(ShardError) is itself a ShardError: its cause is the original
        stack += [e.__context__, e.__cause__, getattr(e, "cause", None)]
    return None


@contextlib.contextmanager
def unwrap_synmed_errors() -> Iterator[None]:
    """Re-raise a SynmedError found inside a Ray exception as itself (one message, exit 2)."""
    try:
        yield
    except Exception as err:
        cause = synmed_cause(err)
        if cause is None or cause is err:
            raise
        raise cause from None
