"""A real Ray Data job on the local Ray: make images in an actor pool, write them as a shard set.

``range`` -> ``map_batches`` (a callable class in a 2-actor pool) -> ``write_datasink`` (an HDF5
datasink that writes each write task's rows as one shard via :func:`suite.data.shards.write_shard`,
then the manifest on completion). The result must be a valid shard set holding every index once,
with the images the deterministic generator gives, and both actors must have done work.
"""

from __future__ import annotations

import os

# Ray reads these when it is imported: they must be set before `import ray`, or the node binds the
# eth0 address instead of 127.0.0.1 (see /work/shared/ENV.md section 2).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tests.conftest import need_module  # noqa: E402

ray = need_module("ray", "a dependency of synmed-suite: bash scripts/setup.sh")
from ray import cloudpickle  # noqa: E402
from ray.data import ActorPoolStrategy, DataContext, Datasink  # noqa: E402
from ray.data.block import BlockAccessor  # noqa: E402

from suite.data.shards import ShardRecord, write_manifest, write_shard  # noqa: E402
from suite.data.verify import verify_shard_set  # noqa: E402

pytestmark = [
    pytest.mark.ray,
    # Ray Data's own DataContext copy touches its deprecated fields; nothing this test controls
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context"),
]

N = 240
BLOCKS = 12
SIZE = 16
BATCH_SECONDS = 0.25
CLASSES = ["a", "b", "c"]
ATTRS = {"class_names": CLASSES, "label_kind": "multiclass", "source": "test_ray_smoke"}

# The callable class and the datasink travel to the workers by value: by reference, a worker must
# import this test module, which works on a local Ray (workers inherit the driver's sys.path) but
# not with pytest's importlib import mode or on a remote cluster.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def make_image(index: int) -> np.ndarray:
    """A (1, SIZE, SIZE) uint8 image that depends only on ``index``."""
    rng = np.random.default_rng(index)
    return rng.integers(0, 256, size=(1, SIZE, SIZE), dtype=np.uint8)


class MakeImages:
    """The actor-pool stage: one image, label and the actor's pid per index."""

    def __init__(self) -> None:
        self.pid = os.getpid()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        index = batch["id"].astype(np.int64)
        # Making 20 tiny images takes ~1 ms, less than the gap between input blocks, so one actor
        # could take every block while the other sits idle; a little work time spreads them.
        time.sleep(BATCH_SECONDS)
        return {
            "index": index,
            "images": np.stack([make_image(int(i)) for i in index]),
            "labels": index % len(CLASSES),
            "pid": np.full(len(index), self.pid, dtype=np.int64),
        }


class ShardDatasink(Datasink[dict[str, Any]]):
    """Each write task's rows become shard ``task_idx``; the manifest is written when all are done."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.records: list[ShardRecord] = []
        self.pids: set[int] = set()

    def write(self, blocks, ctx) -> dict[str, Any] | None:  # noqa: ANN001 (Ray's own types)
        parts = [BlockAccessor.for_block(b).to_numpy() for b in blocks]
        parts = [p for p in parts if len(p["index"])]
        if not parts:
            return None
        cols = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
        arrays = {
            "images": cols["images"].astype(np.uint8),
            "index": cols["index"].astype(np.int64),
            "labels": cols["labels"].astype(np.int64),
        }
        record = write_shard(self.directory, ctx.task_idx, arrays, ATTRS)
        # the pids are side information for the test, not a shard column
        return {"record": asdict(record), "pids": sorted({int(p) for p in cols["pid"]})}

    def on_write_complete(self, write_result) -> None:  # noqa: ANN001
        returns = [r for r in write_result.write_returns if r is not None]
        self.records = [ShardRecord(**r["record"]) for r in returns]
        self.pids = {p for r in returns for p in r["pids"]}
        write_manifest(self.directory, self.records, ATTRS)


def test_actor_pool_writes_a_valid_shard_set(ray_local, tmp_path: Path) -> None:
    addresses = {node["NodeManagerAddress"] for node in ray_local.nodes()}
    assert addresses == {"127.0.0.1"}, f"Ray must bind 127.0.0.1 only, it uses {addresses}"

    out = tmp_path / "shards"
    out.mkdir()
    sink = ShardDatasink(out)
    ctx = DataContext.get_current()
    saved_wait = ctx.wait_for_min_actors_s
    # Dispatch only once both actors are up; otherwise the first one to start can take every
    # block before the second is ready, and "both actors did work" is a coin toss.
    ctx.wait_for_min_actors_s = 60
    try:
        ds = ray.data.range(N, override_num_blocks=BLOCKS).map_batches(
            MakeImages,
            batch_size=None,  # one call per block: every block is a unit of work for the pool
            compute=ActorPoolStrategy(size=2, max_tasks_in_flight_per_actor=1),
            num_cpus=0.5,  # two whole-CPU actors would starve the read tasks on 2 CPUs (deadlock)
        )
        ds.write_datasink(sink)
    finally:
        ctx.wait_for_min_actors_s = saved_wait

    report = verify_shard_set(out)
    assert report.count == N
    assert report.image_shape == (1, SIZE, SIZE)
    assert report.shards == len(sink.records) >= 2

    import h5py

    seen: list[np.ndarray] = []
    for rec in sink.records:
        with h5py.File(out / rec.file, "r") as h5:
            index = h5["index"][:]
            images = h5["images"][:]
            labels = h5["labels"][:]
        seen.append(index)
        for i, image in zip(index, images, strict=True):
            np.testing.assert_array_equal(image, make_image(int(i)), err_msg=f"index {i}")
        np.testing.assert_array_equal(labels, index % len(CLASSES))
    all_index = np.sort(np.concatenate(seen))
    np.testing.assert_array_equal(all_index, np.arange(N))  # every index exactly once

    assert len(sink.pids) == 2, f"both pool actors should have made images, pids seen: {sink.pids}"
    assert os.getpid() not in sink.pids
